import { defineConfig } from "vite";

// One ES module, `dist/onstage-web.js`: what the server hands browsers at
// `/sdk/onstage-web.js` and what a page imports to join a meeting.
export default defineConfig({
  build: {
    lib: {
      entry: "src/index.ts",
      formats: ["es"],
      fileName: () => "onstage-web.js",
    },
    target: "es2021",
    sourcemap: true,
    minify: false,
    // The type declarations (tsc) are written into dist/types/ first.
    emptyOutDir: false,
  },
  // The tests read the Rust protocol's and events' sources (src/rust.test.ts).
  server: {
    fs: { allow: [".", "../crates/proto/src", "../crates/client/src"] },
  },
  test: {
    include: ["src/**/*.test.ts"],
  },
});

import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// Two builds of the one UI:
// - `vite build` -> dist/, for the desktop window: Tauri serves it from its own scheme, so
//   asset paths are relative.
// - `vite build --mode web` -> dist-web/, for browsers: the server embeds it and serves it
//   at /join/, and the page talks to the server with the web Stage SDK (web-sdk/src,
//   bundled from source so the UI never waits for the SDK's own build).
export default defineConfig(({ mode }) => {
  const web = mode === 'web';
  return {
    base: web ? '/join/' : './',
    plugins: [svelte()],
    clearScreen: false,
    resolve: {
      alias: { '@onstage/web-sdk': decodeURIComponent(new URL('../web-sdk/src/index.ts', import.meta.url).pathname) },
    },
    server: { port: 5173, strictPort: true },
    build: { outDir: web ? 'dist-web' : 'dist', target: 'es2021', emptyOutDir: true },
    test: { include: ['src/**/*.test.ts'], environment: 'node' },
  };
});

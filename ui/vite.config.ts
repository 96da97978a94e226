import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  // Tauri serves ui/dist from its own scheme, so asset paths must be relative.
  base: './',
  plugins: [svelte()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { outDir: 'dist', target: 'es2021', emptyOutDir: true },
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});

import { defineConfig } from 'vite';

// The API the dev server and `vite preview` forward to (the host serves
// web/dist itself in production, so this is only for development).
const apiTarget = process.env.API_URL ?? 'http://127.0.0.1:8099';

// Every path but the app's own files belongs to the API.
const apiPaths = ['/auth', '/tasks', '/users', '/admin', '/health', '/commands', '/openapi.json'];
const proxy = Object.fromEntries(apiPaths.map((path) => [path, { target: apiTarget }]));

// The policy the host sends: `vite preview` sends it too, so that the
// browser tests catch an inline script or style before the host would.
const contentSecurityPolicy =
  "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false },
  server: { proxy },
  preview: { proxy, headers: { 'Content-Security-Policy': contentSecurityPolicy } },
});

// The console is served by ringfence-control under /console/ from files embedded at build time
// (control-plane/build.rs runs `npm run build`); nothing is loaded from elsewhere at run time.
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

export default defineConfig({
  base: '/console/',
  plugins: [preact()],
  build: {
    // No data: URIs for assets: the CSP allows images only from 'self' and data: for charts.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 400,
  },
});

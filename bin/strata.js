#!/usr/bin/env node
// The strata CLI: the compiled TypeScript lives in dist/ (built by `npm ci`).
// The daemon's filesystem calls all run on libuv's thread pool (default 4
// threads); materialising a directory or serving many programs at once keeps
// more of them in flight. Set before anything uses the pool.
process.env.UV_THREADPOOL_SIZE ??= '16';
await import('../dist/src/cli/main.js');

#!/usr/bin/env node
// The strata CLI: the compiled TypeScript lives in dist/ (built by `npm ci`).
import '../dist/src/cli/main.js';

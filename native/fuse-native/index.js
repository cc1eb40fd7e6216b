'use strict'
// strata's FUSE bridge: libfuse 3's low-level (inode-based) API, built from
// src/ by binding.gyp (build/Release first, then prebuilds/). What each
// function does: index.d.ts; how the C is laid out: src/bridge.h; README.md.
module.exports = require('node-gyp-build')(__dirname)

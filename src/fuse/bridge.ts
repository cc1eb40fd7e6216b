// Loads the low-level bridge of the patched fuse-native (a CommonJS subpath
// without an extension, which ESM import cannot name directly).
import { createRequire } from 'node:module';
import type * as Bridge from 'fuse-native/lowlevel';

export type { Session } from 'fuse-native/lowlevel';
export const ll: typeof Bridge = createRequire(import.meta.url)('fuse-native/lowlevel') as typeof Bridge;

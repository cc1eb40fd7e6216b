// Loads strata's FUSE bridge: the in-tree fork of fuse-native
// (native/fuse-native, a CommonJS addon, so it is loaded with require). Its
// constants come from its C (native/fuse-native/src/module.c); none is copied
// into TypeScript.
import { createRequire } from 'node:module';
import type * as Bridge from 'fuse-native';

export type { Session, Features } from 'fuse-native';
export const ll: typeof Bridge = createRequire(import.meta.url)('fuse-native') as typeof Bridge;
/** Layouts, flags and bits shared with the bridge's C. */
export const FC = ll.constants;

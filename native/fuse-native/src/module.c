// module.c - what the addon exports: the functions (by file in bridge.h) and
// every constant JavaScript needs, taken from the C definitions themselves
// (bridge.h's lists, libfuse's FUSE_SET_ATTR_* and FUSE_ROOT_ID), so no value
// is ever copied by hand into TypeScript.
//
//   ops                    record kinds: { init: 0, lookup: 1, ... }
//   constants.ROOT_ID      the root's node id (FUSE_ROOT_ID)
//   constants.HANDLE_MAX   largest JavaScript file handle (32 bits of fi->fh)
//   constants.attr         attribute array layout, and LEN
//   constants.setattr      FUSE_SET_ATTR_* bits of a setattr record's toSet
//   constants.setattrArgs  layout of a setattr record's Float64Array, and LEN
//   constants.statfs       replyStatfs's array layout, and LEN
//   constants.dirent       replyDir's per-name layout, and LEN
//   constants.open         replyOpen/replyCreate flags
//   constants.fast         fastPaths flags
//   constants.RENAME_NOREPLACE  the renameat2 flags a rename record may carry (in mode)
//   constants.RENAME_EXCHANGE
//   constants.MAX_FILE_BYTES  the largest file strata keeps (BRIDGE_MAX_FILE_BYTES)
#include "bridge.h"

const char *const bridge_op_names[LL_OP_COUNT] = {
#define BRIDGE_OP_NAME(c, n) #n,
  BRIDGE_OPS(BRIDGE_OP_NAME)
#undef BRIDGE_OP_NAME
};

static void set_u32 (napi_env env, napi_value obj, const char *name, uint32_t value) {
  napi_value v;
  napi_create_uint32(env, value, &v);
  napi_set_named_property(env, obj, name, v);
}

static napi_value frozen (napi_env env, napi_value obj) {
  napi_object_freeze(env, obj);
  return obj;
}

static napi_value new_object (napi_env env) {
  napi_value obj;
  napi_create_object(env, &obj);
  return obj;
}

static napi_value constants (napi_env env) {
  napi_value c = new_object(env), o;

  set_u32(env, c, "ROOT_ID", FUSE_ROOT_ID);
  set_u32(env, c, "HANDLE_MAX", (uint32_t) LL_HANDLE_MASK);

#define FIELD(prefix, n) set_u32(env, o, #n, prefix##n);
#define ATTR_FIELD(n) FIELD(ATTR_, n)
  o = new_object(env);
  BRIDGE_ATTR_FIELDS(ATTR_FIELD)
  set_u32(env, o, "LEN", ATTR_LEN);
  napi_set_named_property(env, c, "attr", frozen(env, o));

#define SETATTR_FIELD(n) FIELD(SETATTR_, n)
  o = new_object(env);
  BRIDGE_SETATTR_FIELDS(SETATTR_FIELD)
  set_u32(env, o, "LEN", SETATTR_LEN);
  napi_set_named_property(env, c, "setattrArgs", frozen(env, o));

#define SETATTR_BIT(n, v) set_u32(env, o, #n, v);
  o = new_object(env);
  BRIDGE_SETATTR_BITS(SETATTR_BIT)
  napi_set_named_property(env, c, "setattr", frozen(env, o));

#define STATFS_FIELD(n) FIELD(STATFS_, n)
  o = new_object(env);
  BRIDGE_STATFS_FIELDS(STATFS_FIELD)
  set_u32(env, o, "LEN", STATFS_LEN);
  napi_set_named_property(env, c, "statfs", frozen(env, o));

#define DIRENT_FIELD(n) FIELD(DIRENT_, n)
  o = new_object(env);
  BRIDGE_DIRENT_FIELDS(DIRENT_FIELD)
  set_u32(env, o, "LEN", DIRENT_LEN);
  napi_set_named_property(env, c, "dirent", frozen(env, o));
#undef FIELD

  o = new_object(env);
  set_u32(env, o, "KEEP_CACHE", LL_OPEN_KEEP_CACHE);
  set_u32(env, o, "DIRECT_IO", LL_OPEN_DIRECT_IO);
  set_u32(env, o, "DIRECT_READ", LL_OPEN_DIRECT_READ);
  set_u32(env, o, "DIRECT_WRITE", LL_OPEN_DIRECT_WRITE);
  set_u32(env, o, "JOURNAL_WRITE", LL_OPEN_JOURNAL_WRITE);
  napi_set_named_property(env, c, "open", frozen(env, o));

  o = new_object(env);
  set_u32(env, o, "READ", LL_FAST_READ);
  set_u32(env, o, "SETTLED", LL_FAST_SETTLED);
  set_u32(env, o, "TRACK", LL_FAST_TRACK);
  set_u32(env, o, "WRITE", LL_FAST_WRITE);
  set_u32(env, o, "JOURNAL", LL_FAST_JOURNAL);
  set_u32(env, o, "NODES", LL_FAST_NODES);
  napi_set_named_property(env, c, "fast", frozen(env, o));

  // The largest file strata keeps (BRIDGE_MAX_FILE_BYTES): 2^50, exact in a double.
  napi_value max_file;
  napi_create_double(env, (double) BRIDGE_MAX_FILE_BYTES, &max_file);
  napi_set_named_property(env, c, "MAX_FILE_BYTES", max_file);
  // A write or fallocate record's kill flag (handle_killpriv_v2).
  set_u32(env, c, "WRITE_KILL_SUIDGID", LL_WRITE_KILL_SUIDGID);
  set_u32(env, c, "WRITE_APPEND", LL_WRITE_APPEND);
  // A rename record's renameat2 flags (in mode): the two the bridge passes on.
  set_u32(env, c, "RENAME_NOREPLACE", RENAME_NOREPLACE);
  set_u32(env, c, "RENAME_EXCHANGE", RENAME_EXCHANGE);
  set_u32(env, c, "JOURNAL_WRITE_OVERHEAD", LL_JOURNAL_WRITE_OVERHEAD);
  set_u32(env, c, "JOURNAL_SETATTR_BYTES", LL_JOURNAL_SETATTR_BYTES);

  return frozen(env, c);
}

static void export_fn (napi_env env, napi_value obj, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, obj, name, fn);
}

static napi_value init (napi_env env, napi_value exports) {
  // session.c
  export_fn(env, exports, "mount", js_mount);
  export_fn(env, exports, "unref", js_unref);
  export_fn(env, exports, "close", js_close);
  export_fn(env, exports, "fastPaths", js_fast_paths);
  export_fn(env, exports, "allocNodeid", js_alloc_nodeid);
  export_fn(env, exports, "fastCounts", js_fast_counts);
  export_fn(env, exports, "writebackCache", js_writeback_cache);
  export_fn(env, exports, "features", js_features);
  export_fn(env, exports, "fastBytes", js_fast_bytes);
  export_fn(env, exports, "directChanges", js_direct_changes);
  export_fn(env, exports, "journalGrant", js_journal_grant);
  export_fn(env, exports, "journalRevoke", js_journal_revoke);
  export_fn(env, exports, "journalFlip", js_journal_flip);
  export_fn(env, exports, "journalActive", js_journal_active);
  export_fn(env, exports, "journalMark", js_journal_mark);
  export_fn(env, exports, "journalCounts", js_journal_counts);
  export_fn(env, exports, "journalNode", js_journal_node);
  export_fn(env, exports, "trackReset", js_track_reset);
  export_fn(env, exports, "trackMark", js_track_mark);
  export_fn(env, exports, "trackForget", js_track_forget);
  export_fn(env, exports, "trackCounts", js_track_counts);
  export_fn(env, exports, "pendingRequests", js_pending_requests);
  export_fn(env, exports, "fastBusy", js_fast_busy);
  export_fn(env, exports, "resetNodes", js_reset_nodes);
  export_fn(env, exports, "notifyIncEpoch", js_notify_inc_epoch);
  // replies.c
  export_fn(env, exports, "replyErr", js_reply_err);
  export_fn(env, exports, "replyEntry", js_reply_entry);
  export_fn(env, exports, "replyCreate", js_reply_create);
  export_fn(env, exports, "replyOpen", js_reply_open);
  export_fn(env, exports, "replyAttr", js_reply_attr);
  export_fn(env, exports, "replyReadlink", js_reply_readlink);
  export_fn(env, exports, "replyWrite", js_reply_write);
  export_fn(env, exports, "replyBuf", js_reply_buf);
  export_fn(env, exports, "replyXattrSize", js_reply_xattr_size);
  export_fn(env, exports, "replyStatfs", js_reply_statfs);
  export_fn(env, exports, "replyDir", js_reply_dir);
  export_fn(env, exports, "noCapabilities", js_no_capabilities);
  export_fn(env, exports, "nodeDescriptor", js_node_descriptor);
  export_fn(env, exports, "sizeChanging", js_size_changing);
  export_fn(env, exports, "settled", js_settled);
  export_fn(env, exports, "notifyInvalInode", js_notify_inval_inode);
  export_fn(env, exports, "notifyInvalLater", js_notify_inval_later);
  export_fn(env, exports, "notifyInvalEntry", js_notify_inval_entry);

  napi_value ops = new_object(env);
  for (uint32_t i = 0; i < LL_OP_COUNT; i++) set_u32(env, ops, bridge_op_names[i], i);
  napi_set_named_property(env, exports, "ops", frozen(env, ops));
  napi_set_named_property(env, exports, "constants", constants(env));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

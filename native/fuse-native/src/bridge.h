// bridge.h - what the parts of strata's FUSE bridge share: the request record,
// the session, the node table's entry, and every constant JavaScript needs
// (module.c exports them; TypeScript never copies a value by hand).
//
// The bridge binds libfuse 3's LOW-LEVEL (inode-based) API (3.14, Debian 12's
// libfuse3-3). The filesystem
// chooses node ids itself (strata: one per object, so hard links share a
// kernel inode, as on ext4). A kernel request is answered on the FUSE thread
// when it can be (fastpath.c), else copied into a request record (this
// header's bridge_req_t) and handed to JavaScript (requests.c), which answers
// it later with one of the reply functions (replies.c). libfuse allows replies
// from any thread, so no FUSE thread ever waits for JavaScript.
//
// Files:
//   session.c   mount, unmount/close, the FUSE loop thread, connection init,
//               turning the FUSE thread's own answers on (fastPaths)
//   intake.c    the fuse_lowlevel_ops table: each kernel request is answered
//               on the FUSE thread (fastpath.c) or becomes a record
//   requests.c  request records, the table of request handles (no reply twice,
//               none after free), the queue to JavaScript and the call into it
//   replies.c   the reply* functions JavaScript answers with, notifications
//   nodes.c     the node table: node id -> O_PATH descriptor in the store
//   fastpath.c  what the FUSE thread answers itself (the passthrough_hp model)
//   journal.c   journalled direct writes: applied here, journalled by JavaScript from a notice
//   track.c     the checkpoints' clearance table (blocks the FUSE thread may overwrite while tracked)
//   module.c    the module's exports: functions and constants
//
// Numbers: node ids, offsets and sizes travel to JavaScript as doubles (exact
// below 2^53); attributes in a Float64Array (ATTR_* layout below); a request
// handle is a double made of a table slot and a generation (requests.c).
#ifndef STRATA_FUSE_BRIDGE_H
#define STRATA_FUSE_BRIDGE_H

#define FUSE_USE_VERSION 314
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <node_api.h>
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>   // RENAME_NOREPLACE (glibc, _GNU_SOURCE)
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

// ---- constants (module.c exports each of them) ----------------------------------

// Kinds of records JavaScript gets: the kernel's requests, then the bridge's
// own notices (exit: the connection ended; newnode: a node the FUSE thread
// made; failed: an error the FUSE thread answered; written: a write the FUSE
// thread applied to a journalled store, for JavaScript to journal (fastpath.c,
// "journalled direct writes"); mark: a marker JavaScript asked for with
// journalMark, behind every notice queued before it; applied: a setattr the
// FUSE thread applied to a journalled store, with the attributes after it).
// Exported as `ops`.
#define BRIDGE_OPS(X) \
  X(INIT, init) X(LOOKUP, lookup) X(FORGET, forget) X(GETATTR, getattr) X(SETATTR, setattr) \
  X(READLINK, readlink) X(MKNOD, mknod) X(MKDIR, mkdir) X(UNLINK, unlink) X(RMDIR, rmdir) \
  X(SYMLINK, symlink) X(RENAME, rename) X(LINK, link) X(OPEN, open) X(READ, read) X(WRITE, write) \
  X(FLUSH, flush) X(RELEASE, release) X(FSYNC, fsync) X(OPENDIR, opendir) X(READDIR, readdir) \
  X(RELEASEDIR, releasedir) X(FSYNCDIR, fsyncdir) X(STATFS, statfs) X(SETXATTR, setxattr) \
  X(GETXATTR, getxattr) X(LISTXATTR, listxattr) X(REMOVEXATTR, removexattr) X(ACCESS, access) \
  X(CREATE, create) X(FALLOCATE, fallocate) X(EXIT, exit) X(NEWNODE, newnode) X(FAILED, failed) \
  X(WRITTEN, written) X(MARK, mark) X(APPLIED, applied)

enum {
#define BRIDGE_OP_ENUM(c, n) LL_##c,
  BRIDGE_OPS(BRIDGE_OP_ENUM)
#undef BRIDGE_OP_ENUM
  LL_OP_COUNT
};
extern const char *const bridge_op_names[LL_OP_COUNT];

// Attribute array (Float64Array of ATTR_LEN): replies, resolved lookups, new
// nodes. Exported as `constants.attr`.
#define BRIDGE_ATTR_FIELDS(X) \
  X(INO_LO) X(INO_HI) X(MODE) X(NLINK) X(UID) X(GID) X(RDEV) X(SIZE) X(BLKSIZE) X(BLOCKS) \
  X(ATIME_S) X(ATIME_NS) X(MTIME_S) X(MTIME_NS) X(CTIME_S) X(CTIME_NS)
enum {
#define BRIDGE_FIELD_ENUM(n) ATTR_##n,
  BRIDGE_ATTR_FIELDS(BRIDGE_FIELD_ENUM)
#undef BRIDGE_FIELD_ENUM
  ATTR_LEN
};

// What a setattr record carries besides mode and size (Float64Array of
// SETATTR_LEN). Exported as `constants.setattrArgs`; the bits saying which
// fields to set are libfuse's FUSE_SET_ATTR_* (`constants.setattr`).
#define BRIDGE_SETATTR_FIELDS(X) X(UID) X(GID) X(ATIME_S) X(ATIME_NS) X(MTIME_S) X(MTIME_NS)
enum {
#define BRIDGE_FIELD_ENUM(n) SETATTR_##n,
  BRIDGE_SETATTR_FIELDS(BRIDGE_FIELD_ENUM)
#undef BRIDGE_FIELD_ENUM
  SETATTR_LEN
};
#define BRIDGE_SETATTR_BITS(X) \
  X(MODE, FUSE_SET_ATTR_MODE) X(UID, FUSE_SET_ATTR_UID) X(GID, FUSE_SET_ATTR_GID) \
  X(SIZE, FUSE_SET_ATTR_SIZE) X(ATIME, FUSE_SET_ATTR_ATIME) X(MTIME, FUSE_SET_ATTR_MTIME) \
  X(ATIME_NOW, FUSE_SET_ATTR_ATIME_NOW) X(MTIME_NOW, FUSE_SET_ATTR_MTIME_NOW) \
  X(KILL_SUIDGID, LL_SETATTR_KILL_SUIDGID)
// The largest file strata keeps, in bytes (1 PiB): what the archive accepts
// (src/protocol/records.ts, `MAX_FILE_BYTES`, checked equal by a unit test)
// and well inside a double's exact integers, which carry offsets to
// JavaScript. The kernel's FUSE allows any offset up to 2^63 - 1; a write,
// fallocate or size past this is EFBIG here, as past a store's own limit
// (ext4: 16 TiB). Exported as `constants.MAX_FILE_BYTES`.
#define BRIDGE_MAX_FILE_BYTES ((off_t) 1 << 50)
// The bridge's own setattr bit (handle_killpriv_v2, FATTR_KILL_SUIDGID): drop
// set-user-ID, and set-group-ID with group-execute, after the change (a
// truncation or chown by a caller without CAP_FSETID). Above libfuse's bits.
#define LL_SETATTR_KILL_SUIDGID (1 << 30)
// A write record's mode: the writer has no CAP_FSETID and set-ID bits must go
// (FUSE_WRITE_KILL_SUIDGID). Exported as `constants.WRITE_KILL_SUIDGID`.
#define LL_WRITE_KILL_SUIDGID 1
// A write record's mode: the write appends (write_appends: the program's file
// is O_APPEND, no writeback cache, no page write-back). Exported as
// `constants.WRITE_APPEND`.
#define LL_WRITE_APPEND 2

// replyStatfs's Float64Array. Exported as `constants.statfs`.
#define BRIDGE_STATFS_FIELDS(X) \
  X(BSIZE) X(FRSIZE) X(BLOCKS) X(BFREE) X(BAVAIL) X(FILES) X(FFREE) X(FAVAIL) X(NAMEMAX)
enum {
#define BRIDGE_FIELD_ENUM(n) STATFS_##n,
  BRIDGE_STATFS_FIELDS(BRIDGE_FIELD_ENUM)
#undef BRIDGE_FIELD_ENUM
  STATFS_LEN
};

// replyDir's Float64Array: DIRENT_LEN numbers per name. Exported as `constants.dirent`.
#define BRIDGE_DIRENT_FIELDS(X) X(INO_LO) X(INO_HI) X(MODE)
enum {
#define BRIDGE_FIELD_ENUM(n) DIRENT_##n,
  BRIDGE_DIRENT_FIELDS(BRIDGE_FIELD_ENUM)
#undef BRIDGE_FIELD_ENUM
  DIRENT_LEN
};

// Open flags of replyOpen/replyCreate (`constants.open`).
#define LL_OPEN_KEEP_CACHE   1
#define LL_OPEN_DIRECT_IO    2
#define LL_OPEN_DIRECT_READ  4
#define LL_OPEN_DIRECT_WRITE 8
// The handle's writes may be applied on the FUSE thread of a journalled store
// and handed to JavaScript as `written` notices (LL_FAST_JOURNAL; fastpath.c).
#define LL_OPEN_JOURNAL_WRITE 16

// What fastPaths lets the FUSE thread answer (`constants.fast`).
#define LL_FAST_READ  1
#define LL_FAST_WRITE 2
// Changes are tracked (checkpoints): a write of a direct-write handle is
// answered on the FUSE thread only when every block it touches is clear in the
// clearance table (track.c); other writes and every fallocate go to JavaScript
// (the handle a create or open on this thread made passes its descriptor in
// the record's ino2, + 1).
#define LL_FAST_TRACK 4
// During a restore (READ off): getattr, and lookup's "no such name", of the
// nodes JavaScript has vouched for as settled (settled.c); every lookup is
// resolved on the FUSE thread so that nodes get their descriptors.
#define LL_FAST_SETTLED 8
// A journalled store (mirror, async mode, no restore, nothing tracked): a
// write of a handle opened with LL_OPEN_JOURNAL_WRITE is applied on the FUSE
// thread when JavaScript's journal credit covers it, and a `written` notice
// carrying its bytes goes to JavaScript ahead of the reply (fastpath.c).
#define LL_FAST_JOURNAL 16
// Nothing answered here, but the node table keeps a descriptor per node (as
// every other bit does): what JavaScript reaches a node through once its last
// name is gone (nodeDescriptor), with every request in JavaScript.
#define LL_FAST_NODES 32
// Journal bytes a write record takes besides its payload (the credit a
// journalled direct write takes is its size plus this). Exported as
// `constants.JOURNAL_WRITE_OVERHEAD`.
#define LL_JOURNAL_WRITE_OVERHEAD 128
// ... and a setattr record (`constants.JOURNAL_SETATTR_BYTES`).
#define LL_JOURNAL_SETATTR_BYTES 512

// fi->fh: bits 0-31 the JavaScript handle (`constants.HANDLE_MAX`), bits 32-58
// direct descriptor + 1, bit 59 writable passthrough, bit 60 journalled direct
// write, bit 61 passthrough, bit 62 direct read, bit 63 direct write.
#define LL_HANDLE_MASK 0xFFFFFFFFULL
#define LL_FH_FD_MASK 0x07FFFFFFULL
#define LL_FH_PT_WRITE (1ULL << 59)     // a writable open answered with FOPEN_PASSTHROUGH alone: its writes go to the store's file (passthrough.c)
#define LL_FH_JOURNAL_WRITE (1ULL << 60) // LL_OPEN_JOURNAL_WRITE
#define LL_FH_PASSTHROUGH  (1ULL << 61) // answered with FOPEN_PASSTHROUGH (passthrough.c)
#define LL_FH_DIRECT_READ  (1ULL << 62)
#define LL_FH_DIRECT_WRITE (1ULL << 63)

// The store's private directory at the root: the FUSE thread never resolves it.
#define LL_RESERVED_NAME ".strata"
// Asked by the kernel before every write(2).
#define LL_CAPS_NAME "security.capability"

// ---- the request record -----------------------------------------------------------

struct bridge_session;

// One kernel request (or a notice) on its way to JavaScript. JavaScript gets
// its fields as the handler's arguments (requests.c, deliver); a request with
// a reply due is owned by the handle table until a reply takes it.
typedef struct bridge_req {
  fuse_req_t req;          // the kernel request to answer; NULL for notices (no reply due)
  struct bridge_session *s;
  double handle;           // JavaScript's name for it (requests.c); 0 for notices
  uint32_t op;             // LL_*
  fuse_ino_t ino;          // target or parent; failed: the node
  fuse_ino_t ino2;         // new parent (rename, link); newnode: the new node id
  char *name;              // name in parent; xattr name
  char *name2;             // new name (rename, link), symlink target
  struct fuse_file_info fi;
  int has_fi;
  double off;              // offset; new size (setattr); nlookup (forget)
  double size;             // requested size (read, readdir, xattr probes); fallocate length
  uint32_t mode;           // mode; access mask; fallocate mode; datasync; xattr flags; rename flags; failed: errno;
                           // write: LL_WRITE_KILL_SUIDGID when set-ID bits must go (handle_killpriv_v2)
  uint32_t to_set;         // setattr: FUSE_SET_ATTR_* bits
  uint32_t rdev;           // mknod: device; create: open flags; failed: the op (LL_*);
                           // fallocate: LL_WRITE_KILL_SUIDGID when set-ID bits must go
  double setattr_args[SETATTR_LEN];
  char *data;              // write payload / xattr value (malloc'd)
  size_t data_len;
  uint32_t uid, gid, pid;  // the caller
  uint32_t umask;          // create, mkdir, mknod with POSIX ACLs on: the caller's umask, strata's to apply (else 0: the kernel did)
  int delivered;           // JavaScript has been called with it (requests.c)
  int pre_fd;              // lookup resolved on the FUSE thread: O_PATH descriptor, or -1
  struct stat pre_st;      // ... and its attributes (also newnode's)
  int has_pre;             // pre_st is set (resolved lookup, newnode)
  uint64_t node_gen;       // the session's node generation when the request came (pre_fd: when it was taken) (resetNodes)
  struct bridge_req *next; // in the session's list of announced nodes
} bridge_req_t;

// ---- the node table's entry -----------------------------------------------------------

typedef struct bridge_node {
  uint64_t nodeid;
  int fd;                  // O_PATH descriptor of the object in the store
  int64_t nlookup;
  int refs;                // requests using fd right now
  int opens;               // handles the bridge made on it and has not released
  int is_dir;              // directories leave the table last
  int dead;                // out of the table; freed when refs drops to 0
  int settled;             // JavaScript vouched that fstat is the truth (settled.c)
  uint32_t settled_seq;    // bumped by every revoke (and when the entry dies)
  int journal;             // JavaScript knows the node's object id: its setattrs may be journalled from notices (journal.c)
  struct bridge_node *next;                // hash chain
  struct bridge_node *lru_prev, *lru_next; // recency list
} bridge_node_t;

// ---- the session -------------------------------------------------------------------

typedef struct bridge_session {
  napi_threadsafe_function tsfn; // the queue to JavaScript
  struct fuse_session *se;
  char *mnt;
  unsigned max_write;      // bytes per WRITE request (the max_write= option), 0: libfuse's
  int writeback_wanted;    // the writeback_cache option: ask the kernel for its writeback cache
  int writeback_on;        // the kernel granted it (set in init, read by open/create after)
  // Features libfuse 3.14 does not know, added to the INIT reply by the bridge
  // (session.c: negotiate_init): asked for with the passthrough and
  // handle_killpriv_v2 options, on when the kernel offered them.
  int passthrough_wanted;
  int killpriv_wanted;
  int passthrough_on;      // FUSE_PASSTHROUGH negotiated (passthrough.c)
  int passthrough_writes_wanted; // the passthrough_writes option: writable opens may pass through too (passthrough_eligible)
  int killpriv_on;         // FUSE_HANDLE_KILLPRIV_V2 negotiated
  int parallel_dirops_wanted; // the parallel_dirops option
  int parallel_dirops_on;  // FUSE_CAP_PARALLEL_DIROPS negotiated (ll_init)
  int parallel_dirops_offered;
  int atomic_o_trunc_off;  // the no_atomic_o_trunc option (a mirrored store: intake.c, ll_init)
  int atomic_o_trunc_on;   // FUSE_CAP_ATOMIC_O_TRUNC negotiated (ll_init)
  int posix_acl_wanted;    // the posix_acl option
  int posix_acl_on;        // FUSE_CAP_POSIX_ACL (with FUSE_CAP_DONT_MASK) negotiated (ll_init)
  int posix_acl_offered;
  int readdirplus_on;      // FUSE_CAP_READDIRPLUS negotiated (never: no readdirplus op)
  uint64_t kernel_offered; // the INIT request's flags (flags2 in the high half)
  int init_intercepted;    // the INIT reply went through negotiate_init
  // The receive loop (session.c): worker threads, under loop_lock.
  pthread_mutex_t loop_lock;
  pthread_cond_t loop_cond;
  int loop_threads;        // workers running
  int loop_idle;           // workers waiting for a request
  // Passthrough (passthrough.c), under pt_lock (a leaf lock).
  pthread_mutex_t pt_lock;
  struct pt_entry **pt_buckets;
  size_t pt_nbuckets;
  uint64_t pt_opens;       // opens answered in passthrough (__atomic)
  uint64_t pt_shared;      // ... of them, opens that only joined an inode in passthrough (FOPEN_DIRECT_IO)
  uint64_t pt_refused;     // backing registrations the kernel refused (__atomic)
  int pt_backing;          // backing files registered now
  int64_t pt_writers;      // writable handles in passthrough (LL_FH_PT_WRITE) open now (__atomic)
  uint64_t pt_write_opens; // writable opens answered in passthrough (__atomic)
  pthread_t thread;
  int loop_result;
  int loop_done;           // the FUSE loop has ended (the kernel connection is gone)
  int closed;              // close() ran: no more replies, no more calls into libfuse
  double attr_timeout;     // for attributes the FUSE thread answers itself
  // The FUSE thread's own answers; all zero until fastPaths() turns them on.
  int fast;                // LL_FAST_* bits, read with __atomic_load_n
  double entry_timeout;
  double negative_timeout;
  uid_t daemon_uid;
  gid_t daemon_gid;
  uint64_t next_nodeid;    // shared with JavaScript (allocNodeid), __atomic
  uint64_t fast_counts[LL_OP_COUNT]; // requests answered on the FUSE thread, per op
  uint64_t fast_bytes[2];  // bytes of reads (as asked: see fastBytes) and writes the FUSE thread answered
  int direct_changes;      // direct writes/fallocates running on a FUSE thread right now
  // The checkpoints' clearance table (track.c), under track_lock (a leaf lock).
  pthread_mutex_t track_lock;
  struct track_table *track;
  uint64_t track_direct;   // writes answered on the FUSE thread while tracked (__atomic)
  uint64_t track_sent;     // direct-handle writes sent to JavaScript because a block was not clear (__atomic)
  uint64_t fast_busy;      // FUSE threads inside a fast_* answer right now (__atomic, seq_cst)
  // Journalled direct writes (fastpath.c), all __atomic.
  int64_t dj_credit;       // journal bytes JavaScript granted and no write has taken yet
  int dj_active[2];        // such writes between taking credit and queueing their notice, per phase
  uint32_t dj_phase;       // which dj_active a write starting now counts in (journalFlip)
  uint64_t dj_direct;      // writes applied here and handed to JavaScript as notices
  uint64_t dj_bytes;       // ... their bytes
  uint64_t dj_sent;        // writes of journal-write handles sent to JavaScript as requests (no credit, killpriv, tracked, off)
  uint64_t dj_setattrs;    // setattrs applied here and handed to JavaScript as notices
  uint64_t node_gen;       // bumped by resetNodes: descriptors taken before belong to another store
  // The node table (nodes.c), under nodes_lock.
  pthread_mutex_t nodes_lock;
  bridge_node_t **buckets;
  bridge_node_t *lru_head, *lru_tail; // most / least recently used (the root is not in it)
  size_t nbuckets;
  size_t nnodes;
  size_t max_nodes;
  // Nodes the FUSE thread created, not yet handed to JavaScript (under nodes_lock).
  bridge_req_t *announced_head, *announced_tail;
  size_t announced;
} bridge_session_t;

// ---- requests.c ------------------------------------------------------------------------

// A record for `req` (NULL: a notice), with the caller's credentials; a record
// with a reply due gets a handle. NULL when out of memory.
bridge_req_t *req_new (bridge_session_t *s, fuse_req_t req, uint32_t op, fuse_ino_t ino);
void req_free (bridge_req_t *r);
// Hands a record to JavaScript; when that fails, answers the kernel itself
// (ENOMEM for no record, EIO for a closed queue).
void req_submit (bridge_session_t *s, fuse_req_t req, bridge_req_t *r);
// Hands a notice to JavaScript (dropped if the queue is closed).
void req_notify (bridge_session_t *s, bridge_req_t *r);
// The record behind a handle JavaScript passed, delivered to it and still due
// a reply; else throws (TypeError for a value that is no number, an Error
// with code ERR_FUSE_REQUEST_ANSWERED for a handle answered, dropped by
// close(), not delivered yet or never issued) and returns NULL.
bridge_req_t *req_peek (napi_env env, napi_value handle);
// Takes the record out of the handle table: after this no reply can reach it
// again. Call right before fuse_reply_*, then req_done.
void req_take (bridge_req_t *r);
void req_done (bridge_req_t *r);
// Answers every request of `s` still waiting for JavaScript with EIO (the
// connection has ended) and frees them; later replies to them are refused.
size_t req_drop_session (bridge_session_t *s);
// How many requests wait for a reply (all sessions).
size_t req_pending (void);
// The threadsafe function's call_js: runs on the JavaScript thread.
void req_call_js (napi_env env, napi_value js_cb, void *context, void *data);

// ---- nodes.c ---------------------------------------------------------------------------

int nodes_init (bridge_session_t *s, int root_fd, size_t max_nodes);
void nodes_free (bridge_session_t *s);
int nodes_ready (bridge_session_t *s);
// Drops every entry (closed once unused) and the nodes not yet announced, and
// makes root_fd the root's descriptor (the store root moved: swap).
void nodes_reset (bridge_session_t *s, int root_fd);
size_t node_table_capacity (void);
// Takes a reference on the node's entry, or NULL when it has no descriptor.
bridge_node_t *node_acquire (bridge_session_t *s, uint64_t nodeid);
void node_release (bridge_session_t *s, bridge_node_t *n);
// The kernel learned `nodeid` once more; fd (>= 0) may become its descriptor.
int node_learned (bridge_session_t *s, uint64_t nodeid, int fd, int is_dir);
void node_pin (bridge_session_t *s, uint64_t nodeid, int delta);
void node_forget (bridge_session_t *s, uint64_t nodeid, uint64_t count);
// As node_acquire, also reporting whether the node is vouched for as settled
// and the vouch's sequence number.
bridge_node_t *node_acquire_vouched (bridge_session_t *s, uint64_t nodeid, int *settled, uint32_t *seq);
// node_release; returns whether the vouch with sequence number `seq` still holds.
int node_release_vouched (bridge_session_t *s, bridge_node_t *n, uint32_t seq);
// JavaScript vouches for (on) or revokes (off) a node; 1 when it has an entry.
int node_set_settled (bridge_session_t *s, uint64_t nodeid, int on);

// ---- fastpath.c ------------------------------------------------------------------------

// Each returns 1 when it answered the kernel, 0 when JavaScript must.
int fast_lookup (bridge_session_t *s, fuse_req_t req, fuse_ino_t parent, const char *name, int *fd, struct stat *st);
int fast_getattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
int fast_setattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi);
int fast_open (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
int fast_new (bridge_session_t *s, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi);
int fast_read (bridge_session_t *s, fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi);
int fast_write (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi, int kill_suidgid);
int fast_flush (bridge_session_t *s, fuse_req_t req, struct fuse_file_info *fi);
int fast_release (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
int fast_fsync (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
int fast_fallocate (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi, int kill_suidgid);
int fast_getxattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
// Whether the object open on `fd` (O_PATH too) has extended attribute `name` with a value.
int fd_has_xattr (int fd, const char *name);
// A descriptor for a node JavaScript answers with an entry, when surely of its object (else -1).
int fast_entry_fd (bridge_session_t *s, uint64_t gen, fuse_ino_t nodeid, fuse_ino_t parent, const char *name, const struct stat *st);
// settled.c: the same answers during a restore, for nodes JavaScript vouched for.
int fast_settled_getattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino);
int fast_settled_lookup (bridge_session_t *s, fuse_req_t req, fuse_ino_t parent, const char *name, int *fd, struct stat *st);
// fi->fh and the open flags of a reply: JavaScript handle, direct descriptor, LL_OPEN_* bits.
void fill_open (struct fuse_file_info *fi, uint32_t handle, int32_t direct_fd, uint32_t flags);
// Notes (known) or forgets that a node has no security.capability attribute.
void nocaps_set (uint64_t nodeid, int known);
void sizing_add (uint64_t nodeid, int delta);

// ---- journal.c -------------------------------------------------------------------------

// A write of a journal-write handle (LL_FH_JOURNAL_WRITE): 1 when applied here
// (a `written` notice queued ahead of the reply), 0 when JavaScript must.
int journal_write (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi, int kill_suidgid);
// A setattr (mode, owner, times; no size) of a node JavaScript marked with
// journalNode: 1 when applied here (an `applied` notice queued ahead of the
// reply), 0 when JavaScript must.
int journal_setattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set);
// JavaScript knows (on) or forgets the object id of node `nodeid`; 1 when it has an entry.
int node_set_journal (bridge_session_t *s, uint64_t nodeid, int on);

// ---- track.c ---------------------------------------------------------------------------

int track_init (bridge_session_t *s);
void track_free (bridge_session_t *s);
// Is every block of [off, off + size) of store inode `ino` clear (saved by every checkpoint)?
int track_covers (bridge_session_t *s, uint64_t ino, uint64_t off, uint64_t size);

// ---- intake.c ------------------------------------------------------------------------------

extern const struct fuse_lowlevel_ops bridge_ll_ops;
// The INIT notice for JavaScript, queued by session.c once the reply is sent.
void intake_init_done (bridge_session_t *s);

// ---- session.c: the raw request -------------------------------------------------------------

// The raw request the calling FUSE thread is processing (its fuse_in_header,
// then the op's arguments), or NULL (libfuse got it through a pipe, or no
// request is being processed). Read by intake.c for the flags libfuse 3.14
// does not pass on (the kill-set-ID flags of handle_killpriv_v2).
const void *raw_request (void);

// Starts fn(arg) on a detached thread; pthread_create's result (0 or an errno).
int start_detached (void *(*fn)(void *), void *arg);

// ---- passthrough.c ---------------------------------------------------------------------------

int pt_init (bridge_session_t *s);
void pt_free (bridge_session_t *s);
// How an open of node `ino` is answered, decided (and counted) under
// pt_lock, the same way for the FUSE thread's opens and JavaScript's: the
// kernel wants every open of an inode in one mode (page cache, or
// passthrough to one backing file). `eligible`: this open may pass through
// (passthrough_eligible). Returns PT_NONE (a normal open), PT_FULL (reads
// and writes go to the backing file) or PT_JOINED (the inode is in
// passthrough already: FOPEN_PASSTHROUGH | FOPEN_DIRECT_IO, reads and writes
// come to strata as requests); *backing_id is set for the latter two.
// PT_FULL_WRITE: PT_FULL for a writable open (`eligible` was PT_ELIGIBLE_WRITE): its
// writes go to the backing file too, and it is counted until released (pt_writers).
enum { PT_NONE = 0, PT_FULL = 1, PT_JOINED = 2, PT_FULL_WRITE = 3 };
enum { PT_ELIGIBLE_READ = 1, PT_ELIGIBLE_WRITE = 2 };
int pt_open_decide (bridge_session_t *s, fuse_ino_t ino, int fd, int eligible, int32_t *backing_id);
// An open decided by pt_open_decide did not reach the kernel (the opener went away): undo it.
void pt_open_undo (bridge_session_t *s, fuse_ino_t ino, int mode);
// A RELEASE of a file handle (intake.c, before anyone answers it): the
// kernel has dropped that file's io mode already (fuse_file_put).
void pt_release (bridge_session_t *s, fuse_ino_t ino, uint64_t fh);
// May this open pass through (flags: the open's; fh: the handle it gets)? 0, or
// PT_ELIGIBLE_READ / PT_ELIGIBLE_WRITE (a writable open, with the passthrough_writes option).
int passthrough_eligible (bridge_session_t *s, int flags, uint64_t fh);
// Answers an open or create with the handle in fi and the passthrough mode
// (pt_open_decide); e != NULL: a create. Returns libfuse's result (-ENOENT:
// the opener went away).
int pt_reply_open (fuse_req_t req, const struct fuse_entry_param *e, const struct fuse_file_info *fi, int mode, int32_t backing_id);

// Is this part of the FUSE thread's own answers on (LL_FAST_*)?
static inline int fast_on (bridge_session_t *s, int bit) {
  return s != NULL && (__atomic_load_n(&s->fast, __ATOMIC_SEQ_CST) & bit) != 0;
}

// Runs a fast_* answer that uses the store (node table, store root) counted in
// fast_busy, so that JavaScript can wait until none is under way (fastBusy)
// after turning the fast paths off, before the store root moves (swap).
#define FAST_COUNTED(sess, call) __extension__ ({ \
  bridge_session_t *fs_ = (sess); \
  __atomic_add_fetch(&fs_->fast_busy, 1, __ATOMIC_SEQ_CST); \
  int fr_ = (call); \
  __atomic_sub_fetch(&fs_->fast_busy, 1, __ATOMIC_SEQ_CST); \
  fr_; })

// One more request answered on the FUSE thread (fastCounts).
static inline void fast_count (bridge_session_t *s, uint32_t op) {
  __atomic_fetch_add(&s->fast_counts[op], 1, __ATOMIC_RELAXED);
}

/* A lookup of a name that does not exist, answered on the FUSE thread: a negative entry for the session's negative timeout. */
static inline void fast_reply_negative (bridge_session_t *s, fuse_req_t req) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.entry_timeout = s->negative_timeout;
  fuse_reply_entry(req, &e);
  fast_count(s, LL_LOOKUP);
}

// Bytes of a read (0) or write (1) answered on the FUSE thread (fastBytes).
// A setattr's times as utimensat/futimens take them: UTIME_OMIT for what it
// does not set, UTIME_NOW for "now". 0 when it sets no time.
static inline int setattr_times (const struct stat *attr, int to_set, struct timespec ts[2]) {
  if (!(to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))) return 0;
  ts[0].tv_sec = 0; ts[0].tv_nsec = UTIME_OMIT;
  ts[1] = ts[0];
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) ts[0].tv_nsec = UTIME_NOW;
  else if (to_set & FUSE_SET_ATTR_ATIME) ts[0] = attr->st_atim;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) ts[1].tv_nsec = UTIME_NOW;
  else if (to_set & FUSE_SET_ATTR_MTIME) ts[1] = attr->st_mtim;
  return 1;
}

// Does this write append (posix_rules.h, sr_append)? The program's file is
// O_APPEND now (the request carries its flags), and the kernel chose no
// position of its own: without the writeback cache, which keeps the size and
// writes cached pages back where they belong.
static inline int write_appends (bridge_session_t *s, const struct fuse_file_info *fi) {
  return (fi->flags & O_APPEND) != 0 && !fi->writepage && !__atomic_load_n(&s->writeback_on, __ATOMIC_ACQUIRE);
}

static inline void fast_bytes (bridge_session_t *s, int which, uint64_t n) {
  __atomic_fetch_add(&s->fast_bytes[which], n, __ATOMIC_RELAXED);
}

// ---- N-API helpers (napi_util.c) ----------------------------------------------------------

napi_value js_num (napi_env env, double d);
napi_value js_bool (napi_env env, int b);
napi_value js_name_or_undefined (napi_env env, const char *str);
double js_dbl (napi_env env, napi_value v);
void js_throw_type (napi_env env, const char *msg);
bridge_session_t *js_session (napi_env env, napi_value v);
napi_value js_counter_pair (napi_env env, const uint64_t *a, const uint64_t *b);
napi_value js_node_flag (napi_env env, napi_callback_info info, int (*set) (bridge_session_t *, uint64_t, int));

#define JS_ARGS(n) \
  size_t argc = n; \
  napi_value argv[n]; \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);

// The JavaScript-callable functions, by file (module.c exports them).
napi_value js_mount (napi_env env, napi_callback_info info);
napi_value js_close (napi_env env, napi_callback_info info);
napi_value js_unref (napi_env env, napi_callback_info info);
napi_value js_fast_paths (napi_env env, napi_callback_info info);
napi_value js_alloc_nodeid (napi_env env, napi_callback_info info);
napi_value js_fast_counts (napi_env env, napi_callback_info info);
napi_value js_writeback_cache (napi_env env, napi_callback_info info);
napi_value js_features (napi_env env, napi_callback_info info);
napi_value js_fast_bytes (napi_env env, napi_callback_info info);
napi_value js_direct_changes (napi_env env, napi_callback_info info);
napi_value js_journal_grant (napi_env env, napi_callback_info info);
napi_value js_journal_revoke (napi_env env, napi_callback_info info);
napi_value js_journal_flip (napi_env env, napi_callback_info info);
napi_value js_journal_active (napi_env env, napi_callback_info info);
napi_value js_journal_mark (napi_env env, napi_callback_info info);
napi_value js_journal_counts (napi_env env, napi_callback_info info);
napi_value js_journal_node (napi_env env, napi_callback_info info);
napi_value js_track_reset (napi_env env, napi_callback_info info);
napi_value js_track_mark (napi_env env, napi_callback_info info);
napi_value js_track_forget (napi_env env, napi_callback_info info);
napi_value js_track_counts (napi_env env, napi_callback_info info);
napi_value js_notify_inval_later (napi_env env, napi_callback_info info);
napi_value js_fast_busy (napi_env env, napi_callback_info info);
napi_value js_reset_nodes (napi_env env, napi_callback_info info);
napi_value js_notify_inc_epoch (napi_env env, napi_callback_info info);
napi_value js_pending_requests (napi_env env, napi_callback_info info);
napi_value js_reply_err (napi_env env, napi_callback_info info);
napi_value js_reply_entry (napi_env env, napi_callback_info info);
napi_value js_reply_create (napi_env env, napi_callback_info info);
napi_value js_reply_open (napi_env env, napi_callback_info info);
napi_value js_reply_attr (napi_env env, napi_callback_info info);
napi_value js_reply_readlink (napi_env env, napi_callback_info info);
napi_value js_reply_write (napi_env env, napi_callback_info info);
napi_value js_reply_buf (napi_env env, napi_callback_info info);
napi_value js_reply_xattr_size (napi_env env, napi_callback_info info);
napi_value js_reply_statfs (napi_env env, napi_callback_info info);
napi_value js_reply_dir (napi_env env, napi_callback_info info);
napi_value js_no_capabilities (napi_env env, napi_callback_info info);
napi_value js_node_descriptor (napi_env env, napi_callback_info info);
napi_value js_size_changing (napi_env env, napi_callback_info info);
napi_value js_settled (napi_env env, napi_callback_info info);
napi_value js_notify_inval_inode (napi_env env, napi_callback_info info);
napi_value js_notify_inval_entry (napi_env env, napi_callback_info info);

#endif

// passthrough.c - FUSE passthrough (Linux 6.9+): opens whose reads the kernel
// serves from the store's file itself, without a request to strata.
//
// libfuse 3.14 has no API for it; the bridge speaks the kernel's protocol
// (kernel_abi.h): FUSE_PASSTHROUGH is added to the INIT reply (session.c), a
// backing file is registered with ioctl(FUSE_DEV_IOC_BACKING_OPEN) on
// /dev/fuse, and the open reply is built here (FOPEN_PASSTHROUGH and the
// backing id in fuse_open_out). The id is closed (FUSE_DEV_IOC_BACKING_CLOSE)
// when the last passthrough handle of the inode is released.
//
// The kernel's rule (fs/fuse/iomode.c): all open files of an inode are in one
// mode. While one is open in passthrough, every other open of the inode must
// be FOPEN_PASSTHROUGH with the same backing file, else its open fails with
// EIO; and an open in passthrough fails while the inode has a file open
// through the page cache. The kernel leaves a file's mode before it sends
// its RELEASE (fuse_file_put). So every open and create reply (the FUSE
// thread's and JavaScript's) is decided here, per node id, under one lock:
// - the inode has passthrough files open: this one joins them. When it may
//   pass through itself, FOPEN_PASSTHROUGH (PT_FULL); else
//   FOPEN_PASSTHROUGH | FOPEN_DIRECT_IO (PT_JOINED): its reads and writes
//   come to strata as requests, as before (only mmap goes to the backing
//   file: see docs/fuse-bridge.md for what that means);
// - the inode has page-cache files open, or this open may not pass through:
//   a normal open, counted;
// - else it is the inode's first passthrough open: register the backing file
//   (a refusal means a normal open).
// Which opens may pass through at all: passthrough_eligible.
#include "bridge.h"
#include "kernel_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

typedef struct pt_entry {
  uint64_t ino;
  int cached;          // open files of the inode in page-cache mode (or direct_io)
  int pt;              // open files of the inode in passthrough (FULL or JOINED)
  int32_t backing_id;  // while pt > 0
  struct pt_entry *next;
} pt_entry_t;

#define PT_BUCKETS 4096

int pt_init (bridge_session_t *s) {
  pthread_mutex_init(&s->pt_lock, NULL);
  s->pt_buckets = calloc(PT_BUCKETS, sizeof(pt_entry_t *));
  s->pt_nbuckets = PT_BUCKETS;
  return s->pt_buckets != NULL;
}

// After the connection ended (the kernel dropped every backing file with it).
void pt_free (bridge_session_t *s) {
  if (s->pt_buckets == NULL) return;
  for (size_t i = 0; i < s->pt_nbuckets; i++) {
    pt_entry_t *e = s->pt_buckets[i];
    while (e != NULL) {
      pt_entry_t *next = e->next;
      free(e);
      e = next;
    }
  }
  free(s->pt_buckets);
  s->pt_buckets = NULL;
  pthread_mutex_destroy(&s->pt_lock);
}

static pt_entry_t **pt_slot (bridge_session_t *s, uint64_t ino) {
  pt_entry_t **p = &s->pt_buckets[(ino * 0x9E3779B97F4A7C15ULL) >> 52 & (PT_BUCKETS - 1)];
  while (*p != NULL && (*p)->ino != ino) p = &(*p)->next;
  return p;
}

static void pt_drop_if_unused (pt_entry_t **p) {
  pt_entry_t *e = *p;
  if (e->cached == 0 && e->pt == 0) {
    *p = e->next;
    free(e);
  }
}

// The rule in strata (docs/fuse-bridge.md): a read-only, non-O_DIRECT open of
// a plain local file whose reads the FUSE thread already answers from the
// store's descriptor (JavaScript or the FUSE thread gave it a direct-read
// handle: no stub, nothing to fetch), and only while nothing journals or
// tracks the store (LL_FAST_WRITE without LL_FAST_TRACK: no mirror, no
// checkpoint, no restore).
// With the passthrough_writes option a writable open of a regular file passes
// through as well, under the same conditions, when its handle also writes the
// store's file directly (a direct-write handle), and only while
// handle_killpriv_v2 is off: the kernel writes a passthrough file as the
// daemon (root), which keeps the set-ID bits and file capability a write by
// the program drops, and under handle_killpriv_v2 it leaves that drop to the
// daemon, which never sees the write. Without it the kernel drops them itself
// before each such write (file_remove_privs: a SETATTR or REMOVEXATTR to
// strata), as for any other write (the daemon leaves handle_killpriv_v2 off
// with passthrough_writes: src/daemon/mount-daemon.ts). But FUSE's own rule
// drops set-group-ID only with group execute, where ext4 also drops it for a
// writer outside the file's group: a set-group-ID file stays with strata,
// whose rule is ext4's (posix_rules.h).
// A checkpoint waits for writable passthrough handles to close
// (pt_writers: src/checkpoint-service), since their writes are not seen.
int passthrough_eligible (bridge_session_t *s, int flags, uint64_t fh) {
  if (!s->passthrough_on) return 0;
  if ((flags & O_DIRECT) != 0) return 0;
  if (!(fh & LL_FH_DIRECT_READ) || ((fh >> 32) & LL_FH_FD_MASK) == 0) return 0;
  int fast = __atomic_load_n(&s->fast, __ATOMIC_SEQ_CST);
  if ((fast & LL_FAST_WRITE) == 0 || (fast & LL_FAST_TRACK) != 0) return 0;
  if ((flags & O_ACCMODE) == O_RDONLY) return (flags & O_TRUNC) == 0 ? PT_ELIGIBLE_READ : 0;
  if (!s->passthrough_writes_wanted || s->killpriv_on || !(fh & LL_FH_DIRECT_WRITE)) return 0;
  // The kernel's backing file keeps the O_APPEND of the open: a program that
  // clears it with fcntl(F_SETFL) would still append. Such opens stay with
  // strata's own writes, which follow the flag of each write (posix_rules.h).
  if (flags & O_APPEND) return 0;
  struct stat st;
  if (fstat((int) ((fh >> 32) & LL_FH_FD_MASK) - 1, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & S_ISGID)) return 0;
  // Counted before the flags are looked at again: a checkpoint sets TRACK,
  // then waits for pt_writers to reach 0 (both seq_cst), so either it sees
  // this open, or this open sees TRACK and stays out. pt_open_decide takes
  // the count back unless the open ends in passthrough.
  __atomic_add_fetch(&s->pt_writers, 1, __ATOMIC_SEQ_CST);
  fast = __atomic_load_n(&s->fast, __ATOMIC_SEQ_CST);
  if ((fast & LL_FAST_WRITE) == 0 || (fast & LL_FAST_TRACK) != 0) {
    __atomic_sub_fetch(&s->pt_writers, 1, __ATOMIC_SEQ_CST);
    return 0;
  }
  return PT_ELIGIBLE_WRITE;
}

static int pt_decide (bridge_session_t *s, fuse_ino_t ino, int fd, int eligible, int32_t *backing_id);

int pt_open_decide (bridge_session_t *s, fuse_ino_t ino, int fd, int eligible, int32_t *backing_id) {
  int mode = pt_decide(s, ino, fd, eligible, backing_id);
  // A writable open was counted by passthrough_eligible: kept only when it passes through.
  if (eligible == PT_ELIGIBLE_WRITE && mode != PT_FULL_WRITE) __atomic_sub_fetch(&s->pt_writers, 1, __ATOMIC_SEQ_CST);
  if (mode == PT_FULL_WRITE) __atomic_add_fetch(&s->pt_write_opens, 1, __ATOMIC_RELAXED);
  return mode;
}

static int pt_decide (bridge_session_t *s, fuse_ino_t ino, int fd, int eligible, int32_t *backing_id) {
  if (!s->passthrough_on) return PT_NONE;
  pthread_mutex_lock(&s->pt_lock);
  pt_entry_t **p = pt_slot(s, ino);
  pt_entry_t *e = *p;
  if (e == NULL) {
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
      // Cannot count it: it cannot pass through, and the inode is not in
      // passthrough (no entry), so a normal open is what the kernel accepts.
      pthread_mutex_unlock(&s->pt_lock);
      return PT_NONE;
    }
    e->ino = ino;
    *p = e;
  }
  int mode = PT_NONE;
  if (e->pt > 0) {
    e->pt++;
    *backing_id = e->backing_id;
    mode = eligible == PT_ELIGIBLE_WRITE ? PT_FULL_WRITE : eligible ? PT_FULL : PT_JOINED;
  } else if (!eligible || e->cached > 0 || fd < 0) {
    e->cached++;
  } else {
    struct kfuse_backing_map map;
    memset(&map, 0, sizeof(map));
    map.fd = fd;
    int id = ioctl(fuse_session_fd(s->se), KFUSE_DEV_IOC_BACKING_OPEN, &map);
    if (id > 0) {
      e->pt = 1;
      e->backing_id = id;
      *backing_id = id;
      mode = eligible == PT_ELIGIBLE_WRITE ? PT_FULL_WRITE : PT_FULL;
      __atomic_add_fetch(&s->pt_backing, 1, __ATOMIC_RELAXED);
    } else {
      __atomic_add_fetch(&s->pt_refused, 1, __ATOMIC_RELAXED);
      e->cached++;
    }
  }
  pthread_mutex_unlock(&s->pt_lock);
  if (mode != PT_NONE) __atomic_add_fetch(&s->pt_opens, 1, __ATOMIC_RELAXED);
  if (mode == PT_JOINED) __atomic_add_fetch(&s->pt_shared, 1, __ATOMIC_RELAXED);
  return mode;
}

static void pt_put (bridge_session_t *s, fuse_ino_t ino, int was_pt) {
  pthread_mutex_lock(&s->pt_lock);
  pt_entry_t **p = pt_slot(s, ino);
  pt_entry_t *e = *p;
  if (e != NULL) {
    if (was_pt && e->pt > 0) {
      if (--e->pt == 0) {
        uint32_t id = (uint32_t) e->backing_id;
        ioctl(fuse_session_fd(s->se), KFUSE_DEV_IOC_BACKING_CLOSE, &id);
        e->backing_id = 0;
        __atomic_sub_fetch(&s->pt_backing, 1, __ATOMIC_RELAXED);
      }
    } else if (!was_pt && e->cached > 0) {
      e->cached--;
    }
    pt_drop_if_unused(p);
  }
  pthread_mutex_unlock(&s->pt_lock);
}

void pt_open_undo (bridge_session_t *s, fuse_ino_t ino, int mode) {
  if (!s->passthrough_on) return;
  pt_put(s, ino, mode != PT_NONE);
  if (mode == PT_FULL_WRITE) __atomic_sub_fetch(&s->pt_writers, 1, __ATOMIC_SEQ_CST);
}

void pt_release (bridge_session_t *s, fuse_ino_t ino, uint64_t fh) {
  if (!s->passthrough_on) return;
  pt_put(s, ino, (fh & LL_FH_PASSTHROUGH) != 0);
  if (fh & LL_FH_PT_WRITE) __atomic_sub_fetch(&s->pt_writers, 1, __ATOMIC_SEQ_CST);
}

// fuse_entry_out/fuse_attr as the kernel reads them (include/uapi/linux/fuse.h).
struct kfuse_attr {
  uint64_t ino, size, blocks, atime, mtime, ctime;
  uint32_t atimensec, mtimensec, ctimensec, mode, nlink, uid, gid, rdev, blksize, flags;
};
struct kfuse_entry_out {
  uint64_t nodeid, generation, entry_valid, attr_valid;
  uint32_t entry_valid_nsec, attr_valid_nsec;
  struct kfuse_attr attr;
};
_Static_assert(sizeof(struct kfuse_entry_out) == 128, "fuse_entry_out");

// Seconds and nanoseconds of a timeout, as libfuse converts one.
static void timeout_parts (double t, uint64_t *sec, uint32_t *nsec) {
  if (t <= 0) { *sec = 0; *nsec = 0; return; }
  if (t > (double) UINT64_MAX) { *sec = UINT64_MAX; *nsec = 0; return; }
  *sec = (uint64_t) t;
  double frac = t - (double) *sec;
  *nsec = frac <= 0 ? 0 : frac >= 1 ? 999999999 : (uint32_t) (frac * 1.0e9);
}

int pt_reply_open (fuse_req_t req, const struct fuse_entry_param *e, const struct fuse_file_info *fi, int mode, int32_t backing_id) {
  struct kfuse_open_out o;
  memset(&o, 0, sizeof(o));
  o.fh = fi->fh | LL_FH_PASSTHROUGH | (mode == PT_FULL_WRITE ? LL_FH_PT_WRITE : 0);
  o.open_flags = KFOPEN_PASSTHROUGH | (mode == PT_JOINED ? KFOPEN_DIRECT_IO : 0);
  o.backing_id = backing_id;
  if (e == NULL) {
    struct iovec iov = { &o, sizeof(o) };
    return fuse_reply_iov(req, &iov, 1);
  }
  struct kfuse_entry_out eo;
  memset(&eo, 0, sizeof(eo));
  eo.nodeid = e->ino;
  eo.generation = e->generation;
  timeout_parts(e->entry_timeout, &eo.entry_valid, &eo.entry_valid_nsec);
  timeout_parts(e->attr_timeout, &eo.attr_valid, &eo.attr_valid_nsec);
  const struct stat *st = &e->attr;
  eo.attr.ino = st->st_ino;
  eo.attr.mode = st->st_mode;
  eo.attr.nlink = (uint32_t) st->st_nlink;
  eo.attr.uid = st->st_uid;
  eo.attr.gid = st->st_gid;
  eo.attr.rdev = (uint32_t) st->st_rdev;
  eo.attr.size = (uint64_t) st->st_size;
  eo.attr.blksize = (uint32_t) st->st_blksize;
  eo.attr.blocks = (uint64_t) st->st_blocks;
  eo.attr.atime = (uint64_t) st->st_atim.tv_sec;
  eo.attr.mtime = (uint64_t) st->st_mtim.tv_sec;
  eo.attr.ctime = (uint64_t) st->st_ctim.tv_sec;
  eo.attr.atimensec = (uint32_t) st->st_atim.tv_nsec;
  eo.attr.mtimensec = (uint32_t) st->st_mtim.tv_nsec;
  eo.attr.ctimensec = (uint32_t) st->st_ctim.tv_nsec;
  struct iovec iov[2] = { { &eo, sizeof(eo) }, { &o, sizeof(o) } };
  return fuse_reply_iov(req, iov, 2);
}

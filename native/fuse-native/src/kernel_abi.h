// kernel_abi.h - the few parts of the kernel's FUSE protocol
// (include/uapi/linux/fuse.h) the bridge reads or writes itself, where
// libfuse 3.14 has no API for them: the INIT reply's flags it does not know
// (handle_killpriv_v2, passthrough), the kill-set-ID flags of WRITE, SETATTR
// and OPEN requests, passthrough's open reply and /dev/fuse ioctls.
//
// Copied from the kernel's uapi header (protocol 7.40+, as in Linux 6.9 and
// later; the older fields match Debian 12's <linux/fuse.h>, 7.38), under the
// bridge's own names: including <linux/fuse.h> next to libfuse's headers
// redefines some macros, and Debian 12's has no passthrough.
#ifndef STRATA_KERNEL_ABI_H
#define STRATA_KERNEL_ABI_H

#include <stdint.h>
#include <sys/ioctl.h>

// Opcodes.
#define KFUSE_SETATTR 4
#define KFUSE_OPEN    14
#define KFUSE_WRITE   16
#define KFUSE_INIT    26
#define KFUSE_CREATE  35

// INIT flags (bits 32-63 travel in flags2 when FUSE_INIT_EXT is set).
#define KFUSE_WRITEBACK_CACHE      (1ULL << 16)
#define KFUSE_HANDLE_KILLPRIV_V2   (1ULL << 28)
#define KFUSE_INIT_EXT             (1ULL << 30)
#define KFUSE_PASSTHROUGH          (1ULL << 37)

// Kill set-user-ID / set-group-ID (handle_killpriv_v2).
#define KFUSE_WRITE_CACHE          (1U << 0)   // fuse_write_in.write_flags: a delayed write from the page cache
#define KFUSE_WRITE_KILL_SUIDGID   (1U << 2)   // fuse_write_in.write_flags
#define KFATTR_KILL_SUIDGID        (1U << 11)  // fuse_setattr_in.valid
#define KFUSE_OPEN_KILL_SUIDGID    (1U << 0)   // fuse_open_in/fuse_create_in.open_flags

// Open reply flags.
#define KFOPEN_DIRECT_IO   (1U << 0)
#define KFOPEN_PASSTHROUGH (1U << 7)

struct kfuse_in_header {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid;
  uint32_t gid;
  uint32_t pid;
  uint16_t total_extlen;
  uint16_t padding;
};

struct kfuse_out_header {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};

struct kfuse_init_in {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint32_t flags2;
  uint32_t unused[11];
};

struct kfuse_init_out {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;  // 7.40 (unused[0] before)
  uint32_t unused[6];
};

struct kfuse_write_in {
  uint64_t fh;
  uint64_t offset;
  uint32_t size;
  uint32_t write_flags;
  uint64_t lock_owner;
  uint32_t flags;
  uint32_t padding;
};

struct kfuse_setattr_in {
  uint32_t valid;
  uint32_t padding;
  // ... (the rest is libfuse's to read)
};

struct kfuse_open_in {
  uint32_t flags;
  uint32_t open_flags;
};

struct kfuse_create_in {
  uint32_t flags;
  uint32_t mode;
  uint32_t umask;
  uint32_t open_flags;
};

struct kfuse_open_out {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;  // 7.40 (padding before)
};

struct kfuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};

#define KFUSE_DEV_IOC_MAGIC         229
#define KFUSE_DEV_IOC_BACKING_OPEN  _IOW(KFUSE_DEV_IOC_MAGIC, 1, struct kfuse_backing_map)
#define KFUSE_DEV_IOC_BACKING_CLOSE _IOW(KFUSE_DEV_IOC_MAGIC, 2, uint32_t)

// The kernel's limit for max_stack_depth (FILESYSTEM_MAX_STACK_DEPTH).
#define KFUSE_MAX_STACK_DEPTH 2

_Static_assert(sizeof(struct kfuse_in_header) == 40, "fuse_in_header");
_Static_assert(sizeof(struct kfuse_out_header) == 16, "fuse_out_header");
_Static_assert(sizeof(struct kfuse_init_in) == 64, "fuse_init_in");
_Static_assert(sizeof(struct kfuse_init_out) == 64, "fuse_init_out");
_Static_assert(sizeof(struct kfuse_write_in) == 40, "fuse_write_in");
_Static_assert(sizeof(struct kfuse_open_out) == 16, "fuse_open_out");
_Static_assert(sizeof(struct kfuse_backing_map) == 16, "fuse_backing_map");

#endif

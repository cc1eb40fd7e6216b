# One of the programs of the concurrent-writers fault test that change files
# in ways node cannot: `python3 concurrent-mapper.py SEED DIR FILES ITERATIONS`.
# Each iteration opens one of the files m0..m{FILES-1} (shared with the other
# mappers, never with the node writers) and changes it 1 to 8 times: through
# a shared writable mapping (sometimes msync'd, sometimes left to be written
# back at munmap or later by the kernel, and sometimes kept mapped across the
# next changes), pwrite, fallocate (allocate, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE,
# with and without KEEP_SIZE) and copy_file_range from another of the files;
# now and then fsync. Between iterations, now and then, it swaps the names of
# two of the files (three renames) or replaces one with a copy renamed over it
# (as editors and rsync do): what the other mappers hold open or mapped then
# has another name, or none. Nothing here ever shrinks a file: a
# mapping of a range another mapper cut would kill the program (SIGBUS).
# A mode the store's filesystem refuses (EOPNOTSUPP) is skipped, as natively.
# The mappers take flock around each change (shared to map, exclusive to grow).
# Prints `done N` (N changes) at the end. The data is random from the seed.
import ctypes
import errno
import fcntl
import mmap
import os
import random
import sys

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
PAGE = mmap.PAGESIZE

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def fallocate(fd, mode, offset, length):
    if libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def rename_quietly(a, b):
    try:
        os.rename(a, b)
        return True
    except FileNotFoundError:
        return False  # another mapper's swap holds it under its own name right now


def swap_names(folder, pair):
    """m{a} and m{b} trade names (three renames; undone when the other is away)."""
    a, b = (os.path.join(folder, 'm%d' % i) for i in pair)
    if a == b:
        return
    parked = os.path.join(folder, '.swap-%d' % os.getpid())
    if not rename_quietly(a, parked):
        return
    if not rename_quietly(b, a):
        os.rename(parked, a)
        return
    os.rename(parked, b)


def replace_with_copy(path):
    """A copy of `path` renamed over it: the old file, maybe open or mapped elsewhere, loses its name."""
    tmp = '%s.new-%d' % (path, os.getpid())
    try:
        src = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while True:
                chunk = os.read(src, 1 << 16)
                if not chunk:
                    break
                os.write(dst, chunk)
            os.fchmod(dst, os.fstat(src).st_mode & 0o7777)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    os.rename(tmp, path)


def main():
    if len(sys.argv) != 5:
        raise SystemExit('usage: concurrent-mapper.py SEED DIR FILES ITERATIONS')
    rng = random.Random(int(sys.argv[1]))
    folder, files, iterations = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    changes = 0
    kept = None  # (mapping, descriptor): a mapping kept across the next changes
    for _ in range(iterations):
        path = os.path.join(folder, 'm%d' % rng.randint(0, files - 1))
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(rng.randint(1, 8)):
            what = rng.random()
            # A mapping is made and stored into under a shared lock, every other change under an
            # exclusive one: the kernel takes a grown size into its inode only once the grower's
            # call returns (after strata's reply), so a mapping of a size another mapper's
            # unfinished call made could fault past the kernel's end (docs/SEMANTICS.md).
            mapping = 0.12 <= what < 0.45
            fcntl.flock(fd, fcntl.LOCK_SH if mapping else fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            try:
                if mapping and size < PAGE:
                    pass  # nothing to map yet
                elif size < PAGE or what < 0.12:
                    # Grows it (never ftruncate: another mapper may have grown it past `size` meanwhile).
                    os.pwrite(fd, rng.randbytes(rng.randint(1, 3 * PAGE)), size)
                elif mapping:
                    mm = mmap.mmap(fd, size)
                    for _ in range(rng.randint(1, 6)):
                        at = rng.randint(0, size - 1)
                        n = min(rng.randint(1, 3 * PAGE), size - at)
                        mm[at:at + n] = rng.randbytes(n)
                    if rng.random() < 0.3:
                        mm.flush()
                    if kept is None and rng.random() < 0.25:
                        kept = (mm, os.dup(fd))
                    else:
                        mm.close()
                elif what < 0.65:
                    os.pwrite(fd, rng.randbytes(rng.randint(1, 2 * PAGE)), rng.randint(0, size + PAGE))
                elif what < 0.85:
                    mode = rng.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE])
                    fallocate(fd, mode, rng.randint(0, size + PAGE), rng.randint(1, 4 * PAGE))
                else:
                    src_path = os.path.join(folder, 'm%d' % rng.randint(0, files - 1))
                    src = os.open(src_path, os.O_RDONLY | os.O_CREAT, 0o644)
                    try:
                        src_size = os.fstat(src).st_size
                        if src_size > 0:
                            at = rng.randint(0, src_size - 1)
                            os.copy_file_range(src, fd, rng.randint(1, 3 * PAGE), at, rng.randint(0, size + PAGE))
                    except OSError as e:
                        # Overlapping ranges of one file (under any of its names): EINVAL, as natively.
                        if not (e.errno == errno.EINVAL and os.fstat(src).st_ino == os.fstat(fd).st_ino):
                            raise
                    finally:
                        os.close(src)
                changes += 1
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EXDEV):
                    raise
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            if kept is not None and rng.random() < 0.2:
                kept[0].close()
                os.close(kept[1])
                kept = None
        if rng.random() < 0.1:
            os.fsync(fd)
        os.close(fd)
        what = rng.random()
        if what < 0.04:
            swap_names(folder, rng.sample(range(files), 2) if files > 1 else [0, 0])
        elif what < 0.08:
            replace_with_copy(os.path.join(folder, 'm%d' % rng.randint(0, files - 1)))
    if kept is not None:
        kept[0].close()
        os.close(kept[1])
    sys.stdout.write('done %d\n' % changes)


main()

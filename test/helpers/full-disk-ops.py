# Applies a list of file operations (JSON on stdin) in the current directory
# and prints each one's outcome (JSON list on stdout): "ok", an errno name, or
# for a write {"n": bytes written, "err": errno name or null}. Used by the
# full-disk model tests (test/fault/lifecycle.test.ts): the test applies to
# its native model exactly what the mount acknowledged.
import errno, json, os, sys

def pattern(seed, size):
    return bytes(((seed + i * 7) % 251) for i in range(size))

def code(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def write_all(fd, data):
    n = 0
    try:
        while n < len(data):
            w = os.write(fd, data[n:])
            if w <= 0:
                break
            n += w
        return {"n": n, "err": None}
    except OSError as e:
        return {"n": n, "err": code(e)}

def run(op):
    k = op["op"]
    try:
        if k == "create" or k == "append":
            flags = os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if k == "create" else os.O_APPEND)
            fd = os.open(op["path"], flags, 0o644)
            try:
                return write_all(fd, pattern(op["seed"], op["size"]))
            finally:
                os.close(fd)
        if k == "overwrite":
            # Bytes written in place at an offset (no O_TRUNC, no O_APPEND): on a
            # recovering store, into a file whose data may still be in the archive.
            fd = os.open(op["path"], os.O_WRONLY)
            try:
                os.lseek(fd, op["offset"], os.SEEK_SET)
                return write_all(fd, pattern(op["seed"], op["size"]))
            finally:
                os.close(fd)
        if k == "unlink": os.unlink(op["path"])
        elif k == "rename": os.rename(op["from"], op["to"])
        elif k == "mkdir": os.mkdir(op["path"], 0o755)
        elif k == "rmdir": os.rmdir(op["path"])
        elif k == "chmod": os.chmod(op["path"], op["mode"])
        elif k == "truncate": os.truncate(op["path"], op["size"])
        elif k == "fsync":
            fd = os.open(op["path"], os.O_RDONLY)
            try: os.fsync(fd)
            finally: os.close(fd)
        elif k == "fill":
            # Outside the mount, on the store's disk: until it is full, or `bytes`.
            with open(op["filler"], "ab") as f:
                left = op["bytes"]
                try:
                    while left > 0:
                        f.write(b"\0" * min(left, 65536)); f.flush(); left -= 65536
                except OSError:
                    pass
        elif k == "free":
            try: os.unlink(op["filler"])
            except FileNotFoundError: pass
        else:
            return "EINVAL"
        return "ok"
    except OSError as e:
        return code(e)

print(json.dumps([run(op) for op in json.load(sys.stdin)]))

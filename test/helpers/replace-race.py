# `python3 replace-race.py DIR N`: one process replaces a file and a symbolic
# link N times each, as editors, rsync and deploy scripts do (a new object
# made under a temporary name, then renamed over the old name), while this
# one opens and reads the file, reads its extended attributes, stats it and
# reads the link, over and over until the replacer is done. On a native
# directory none of these ever fails: each sees the old object or the new one
# (the kernel holds the one it looked up). Prints the failures by operation
# and errno as JSON, then how many rounds ran (on stderr).
import errno
import json
import os
import sys

folder, rounds = sys.argv[1], int(sys.argv[2])
file_name = os.path.join(folder, 'replaced')
link_name = os.path.join(folder, 'current')


def make_file(path, i):
    with open(path, 'w') as f:
        f.write('version %d\n' % i)
    os.setxattr(path, 'user.version', b'%d' % i)


make_file(file_name, 0)
os.symlink('release-0', link_name)
pid = os.fork()
if pid == 0:
    for i in range(1, rounds + 1):
        make_file(file_name + '.tmp', i)
        os.rename(file_name + '.tmp', file_name)
        os.symlink('release-%d' % i, link_name + '.tmp')
        os.rename(link_name + '.tmp', link_name)
    os._exit(0)

failures = {}
done = 0


def attempt(op, f):
    try:
        f()
    except OSError as e:
        key = '%s %s' % (op, errno.errorcode.get(e.errno, e.errno))
        failures[key] = failures.get(key, 0) + 1


def read_file():
    fd = os.open(file_name, os.O_RDONLY)
    try:
        os.read(fd, 64)
    finally:
        os.close(fd)


while True:
    finished, _ = os.waitpid(pid, os.WNOHANG)
    attempt('open', read_file)
    attempt('getxattr', lambda: os.getxattr(file_name, 'user.version'))
    attempt('listxattr', lambda: os.listxattr(file_name))
    attempt('stat', lambda: os.stat(file_name))
    attempt('readlink', lambda: os.readlink(link_name))
    done += 1
    if finished:
        break
print(json.dumps(failures, sort_keys=True))
sys.stderr.write('%d rounds\n' % done)

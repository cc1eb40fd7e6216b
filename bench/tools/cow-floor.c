// cow-floor.c - what copy-on-first-write costs on a disk at the least, without
// strata: overwrite a file in 1 MiB writes (one fdatasync at the end), as the
// checkpoint benchmark's writer does, and the same with the old contents of
// every BATCH bytes first read, appended to a log and fdatasync'ed before the
// overwrite (what a checkpoint must do before a block's first change).
//
//   cc -O2 -o /var/tmp/cow-floor bench/tools/cow-floor.c
//   /var/tmp/cow-floor DIR [MiB=256] [batches in KiB=64,1024,9216,32768]
//
// Prints one JSON line per variant: MiB/s and the ratio to the plain overwrite.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024L * 1024L)

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void must (int ok, const char *what) {
  if (!ok) { perror(what); exit(1); }
}

static void full_pwrite (int fd, const char *buf, size_t n, off_t off) {
  while (n > 0) {
    ssize_t w = pwrite(fd, buf, n, off);
    must(w > 0, "pwrite");
    buf += w; n -= (size_t) w; off += w;
  }
}

// Overwrites `fd` (total bytes) with `fill`; with batch > 0, saves every batch first.
static double run (int fd, int logfd, long total, long batch, int fill) {
  char *buf = malloc(MiB);
  char *old = batch > 0 ? malloc(batch) : NULL;
  memset(buf, fill, MiB);
  off_t logoff = 0;
  long saved_to = 0;
  double t0 = now();
  for (long off = 0; off < total; off += MiB) {
    while (batch > 0 && saved_to < off + MiB) {
      ssize_t r = pread(fd, old, batch, saved_to);
      must(r >= 0, "pread");
      full_pwrite(logfd, old, (size_t) r, logoff);
      logoff += r;
      must(fdatasync(logfd) == 0, "fdatasync log");
      saved_to += batch;
    }
    full_pwrite(fd, buf, MiB, off);
  }
  must(fdatasync(fd) == 0, "fdatasync");
  double dt = now() - t0;
  if (logfd >= 0) must(ftruncate(logfd, 0) == 0, "ftruncate");
  free(buf);
  free(old);
  return (total / (double) MiB) / dt;
}

int main (int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: cow-floor DIR [MiB] [batchKiB,...]\n"); return 2; }
  long mib = argc > 2 ? atol(argv[2]) : 256;
  const char *batches = argc > 3 ? argv[3] : "64,1024,9216,32768";
  char path[4096], logpath[4096];
  snprintf(path, sizeof(path), "%s/cow-floor.data", argv[1]);
  snprintf(logpath, sizeof(logpath), "%s/cow-floor.log", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int logfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
  must(fd >= 0 && logfd >= 0, "open");
  long total = mib * MiB;
  run(fd, -1, total, 0, 1);
  double plain = run(fd, -1, total, 0, 2);
  printf("{\"variant\":\"overwrite, one fdatasync\",\"MiBs\":%.1f}\n", plain);
  char *list = strdup(batches);
  int fill = 3;
  for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
    long batch = atol(tok) * 1024L;
    double v = run(fd, logfd, total, batch, fill++);
    printf("{\"variant\":\"save %ld KiB + fdatasync, then overwrite\",\"MiBs\":%.1f,\"ratio\":%.3f}\n", batch / 1024, v, v / plain);
    fflush(stdout);
  }
  double again = run(fd, -1, total, 0, fill);
  printf("{\"variant\":\"overwrite, one fdatasync (again)\",\"MiBs\":%.1f}\n", again);
  unlink(path);
  unlink(logpath);
  return 0;
}

/*
 * LD_PRELOAD shim for tests: readdir(3) reports every entry's type as
 * DT_UNKNOWN, as XFS with ftype=0 and some network file systems do
 * (test/unit/dirents-unknown.test.ts). Built by the test with cc.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stddef.h>

struct dirent *readdir(DIR *d) {
  static struct dirent *(*real)(DIR *);
  if (real == NULL) real = (struct dirent *(*)(DIR *))dlsym(RTLD_NEXT, "readdir");
  struct dirent *e = real(d);
  if (e != NULL) e->d_type = DT_UNKNOWN;
  return e;
}

struct dirent64 *readdir64(DIR *d) {
  static struct dirent64 *(*real)(DIR *);
  if (real == NULL) real = (struct dirent64 *(*)(DIR *))dlsym(RTLD_NEXT, "readdir64");
  struct dirent64 *e = real(d);
  if (e != NULL) e->d_type = DT_UNKNOWN;
  return e;
}

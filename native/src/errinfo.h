/*
 * errinfo.h - how the C core reports a failure.
 *
 * Every core function returns 0 on success or -1 on failure.  On failure it
 * fills an sn_err with the errno value captured *immediately* after the
 * failing syscall (before any cleanup that could clobber errno) and the name
 * of that syscall.  The N-API glue turns this into a Node-style Error.
 */
#ifndef STRATA_ERRINFO_H
#define STRATA_ERRINFO_H

typedef struct sn_err {
  int code;            /* positive errno value, 0 = no error */
  const char *syscall; /* static string, e.g. "copy_file_range" */
} sn_err;

/* Record a failure; evaluates to -1 so callers can `return SN_FAIL(...)`. */
#define SN_FAIL(errp, err_code, name) \
  ((errp)->code = (err_code), (errp)->syscall = (name), -1)

#endif

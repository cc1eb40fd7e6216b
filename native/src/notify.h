/*
 * notify.h - systemd's readiness protocol (sd_notify(3)) without libsystemd.
 *
 *   sn_notify  one datagram with `msg` (e.g. "READY=1") to the AF_UNIX
 *              SOCK_DGRAM socket at `path` (NOTIFY_SOCKET: a file system path,
 *              or "@name" for the abstract namespace)
 *
 * systemd attributes the datagram to the sending process (SCM_CREDENTIALS are
 * filled in by the kernel), so the main process of a Type=notify unit sends it
 * itself and the unit needs no NotifyAccess=all.
 */
#ifndef STRATA_NOTIFY_H
#define STRATA_NOTIFY_H

#include <stddef.h>

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

int sn_notify(const char *path, const char *msg, size_t len, sn_err *err);

#ifdef __cplusplus
}
#endif

#endif

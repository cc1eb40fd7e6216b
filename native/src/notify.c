/*
 * notify.c - see notify.h.
 */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sn_notify(const char *path, const char *msg, size_t len, sn_err *err) {
  struct sockaddr_un addr;
  size_t plen = strlen(path);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (plen == 0 || plen >= sizeof addr.sun_path || (path[0] != '/' && path[0] != '@'))
    return SN_FAIL(err, EINVAL, "sendto");
  memcpy(addr.sun_path, path, plen);
  /* "@name": the abstract namespace (a leading NUL, no terminating one). */
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t alen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return SN_FAIL(err, errno, "socket");
  ssize_t n;
  do {
    n = sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *) &addr, alen);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    close(fd);
    return SN_FAIL(err, e, "sendto");
  }
  close(fd);
  return 0;
}

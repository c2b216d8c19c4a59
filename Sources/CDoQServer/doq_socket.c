// A bound UDP socket for the DoQ responder, optionally sharing its port with another server's
// socket (SO_REUSEPORT) while receiving every datagram itself. See include/doq_server.h.

#include "doq_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

int doqs_bind_udp(const char *ip, uint16_t port, int steer_reuseport, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sslen;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    sslen = sizeof *v4;
  } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    sslen = sizeof *v6;
  } else {
    snprintf(err, errlen, "not an IP address: %s", ip);
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  if (ss.ss_family == AF_INET6) {
    // Dual-stack whatever net.ipv6.bindv6only says, as NIO binds [::] (IPv4 clients arrive
    // v4-mapped); a kernel without IPv4 refuses, and the socket stays IPv6-only.
    int zero = 0;
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  }
  if (steer_reuseport) {
    int one = 1;
    // "ret #0": every datagram goes to socket 0 of the reuseport group, the first bound (this one),
    // so a server that later binds the same port (NSD's plain-DNS socket on 853) gets none.
    struct sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0}};
    struct sock_fprog prog = {.len = 1, .filter = code};
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) {
      snprintf(err, errlen, "SO_REUSEPORT steering: %s", strerror(errno));
      close(fd);
      return -1;
    }
  }
  if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
    snprintf(err, errlen, "bind %s:%u: %s", ip, (unsigned)port, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

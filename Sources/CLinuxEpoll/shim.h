// epoll and eventfd, which Swift's Glibc module does not export (for UDPExchangeEngine), and
// getrandom (for PooledRandom), and IP_PKTINFO control messages (for UDPSocketLoop).
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>

// The destination address of a datagram a wildcard-bound socket received (IP_PKTINFO,
// IPV6_PKTINFO), so that its reply leaves from that address (for UDPSocketLoop). Written against
// Linux's control-message layout without <sys/socket.h>, whose types this module would otherwise
// import a second time beside Glibc's (SOCK_DGRAM then no longer resolves in Swift).
#include <stddef.h>
#include <string.h>

/// A received datagram's local address to answer from: `family` 2 (AF_INET, 4 bytes of `addr`:
/// the kernel's `ipi_spec_dst`, the destination itself for unicast, an address of the interface
/// for a broadcast) or 10 (AF_INET6, 16: the destination, v4-mapped for IPv4 on a dual-stack
/// socket), 0 when none was found; `ifindex` the interface it came in on.
typedef struct {
  int family;
  unsigned ifindex;
  unsigned char addr[16];
} sotto_reply_source;

/// Linux's `struct cmsghdr`, `struct in_pktinfo` and `struct in6_pktinfo`.
typedef struct { size_t len; int level; int type; } sotto_cmsghdr;
typedef struct { int ifindex; unsigned char spec_dst[4]; unsigned char addr[4]; } sotto_in_pktinfo;
typedef struct { unsigned char addr[16]; unsigned ifindex; } sotto_in6_pktinfo;

#define SOTTO_CMSG_ALIGN(n) (((n) + sizeof(size_t) - 1) & ~(sizeof(size_t) - 1))
#define SOTTO_CMSG_LEN(n) (SOTTO_CMSG_ALIGN(sizeof(sotto_cmsghdr)) + (n))
#define SOTTO_CMSG_SPACE(n) (SOTTO_CMSG_ALIGN(sizeof(sotto_cmsghdr)) + SOTTO_CMSG_ALIGN(n))
enum { SOTTO_IPPROTO_IP = 0, SOTTO_IPPROTO_IPV6 = 41, SOTTO_IP_PKTINFO = 8, SOTTO_IPV6_PKTINFO = 50 };

/// Reads the destination from `length` bytes of received control data (`msg_control`, its
/// `msg_controllen` after the receive).
static inline sotto_reply_source sotto_reply_source_read(const void *control, size_t length) {
  sotto_reply_source out;
  memset(&out, 0, sizeof out);
  const unsigned char *base = control;
  size_t at = 0;
  while (base && at + sizeof(sotto_cmsghdr) <= length) {
    sotto_cmsghdr c;
    memcpy(&c, base + at, sizeof c);
    if (c.len < sizeof c || c.len > length - at) break;
    const unsigned char *data = base + at + SOTTO_CMSG_ALIGN(sizeof(sotto_cmsghdr));
    if (c.level == SOTTO_IPPROTO_IP && c.type == SOTTO_IP_PKTINFO && c.len >= SOTTO_CMSG_LEN(sizeof(sotto_in_pktinfo))) {
      sotto_in_pktinfo info;
      memcpy(&info, data, sizeof info);
      out.family = 2;
      out.ifindex = (unsigned)info.ifindex;
      memcpy(out.addr, info.spec_dst, 4);
      return out;
    }
    if (c.level == SOTTO_IPPROTO_IPV6 && c.type == SOTTO_IPV6_PKTINFO &&
        c.len >= SOTTO_CMSG_LEN(sizeof(sotto_in6_pktinfo))) {
      sotto_in6_pktinfo info;
      memcpy(&info, data, sizeof info);
      out.family = 10;
      out.ifindex = info.ifindex;
      memcpy(out.addr, info.addr, 16);
      return out;
    }
    at += SOTTO_CMSG_ALIGN(c.len);
  }
  return out;
}

/// Control space `sotto_reply_source_write` needs at most.
static inline size_t sotto_reply_source_space(void) { return SOTTO_CMSG_SPACE(sizeof(sotto_in6_pktinfo)); }

/// Writes the control message that makes a reply leave from `s`'s address into `buffer` (at least
/// `sotto_reply_source_space()` bytes) and returns its length for `msg_controllen`; 0 for no
/// source. Only a link-local IPv6 address also names the interface, which it needs; otherwise the
/// route picks it (naming the interface the query came in on would send the answer out of it
/// even where the route back to the client leaves by another).
static inline size_t sotto_reply_source_write(const sotto_reply_source *s, void *buffer) {
  if (!s || !buffer || (s->family != 2 && s->family != 10)) return 0;
  union { sotto_in_pktinfo v4; sotto_in6_pktinfo v6; } info;
  memset(&info, 0, sizeof info);
  sotto_cmsghdr c;
  size_t size;
  if (s->family == 2) {
    memcpy(info.v4.spec_dst, s->addr, 4);
    c.level = SOTTO_IPPROTO_IP;
    c.type = SOTTO_IP_PKTINFO;
    size = sizeof info.v4;
  } else {
    memcpy(info.v6.addr, s->addr, 16);
    info.v6.ifindex = (s->addr[0] == 0xfe && (s->addr[1] & 0xc0) == 0x80) ? s->ifindex : 0;
    c.level = SOTTO_IPPROTO_IPV6;
    c.type = SOTTO_IPV6_PKTINFO;
    size = sizeof info.v6;
  }
  c.len = SOTTO_CMSG_LEN(size);
  memset(buffer, 0, SOTTO_CMSG_SPACE(size));
  memcpy(buffer, &c, sizeof c);
  memcpy((unsigned char *)buffer + SOTTO_CMSG_ALIGN(sizeof(sotto_cmsghdr)), &info, size);
  return SOTTO_CMSG_SPACE(size);
}

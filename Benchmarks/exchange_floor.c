// What one upstream exchange costs the client at the least, with plain blocking calls and nothing
// else in the process: Do53 over a fresh UDP socket per query (as Sotto sends it, R-31), DoT on one
// long-lived TLS connection (OpenSSL, no verification, ALPN "dot"), DoQ on one QUIC connection
// (Sotto's own ngtcp2 + GnuTLS engine, Sources/CNgtcp2Shim, driven with ppoll), one query at a time
// or N in flight. Built and run by Benchmarks/exchange_floor.py against the lab's servers.
//   exchange_floor IP MODE COUNT [OUTSTANDING [ZONE]]   MODE: udp | dot | doq; ZONE: dot (default) | doq
// Prints: mode, exchanges, CPU µs per exchange (utime+stime), wall µs per exchange.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <doq_engine.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in server(const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", ip);
    exit(2);
  }
  return a;
}

/// The lab zone asked: "dot" (dot.test.) or "doq" (doq.test.).
static const char *zone = "dot";

// A query for "q<i>-<tag>.<zone>.test. A" with ID i: every name is new to the server's answer path.
static int query(uint8_t *out, unsigned i, unsigned tag) {
  uint8_t *p = out;
  *p++ = (uint8_t)(i >> 8), *p++ = (uint8_t)i;
  *p++ = 0x00, *p++ = 0x00;  // RD=0: an iterative resolver's query
  *p++ = 0, *p++ = 1, *p++ = 0, *p++ = 0, *p++ = 0, *p++ = 0, *p++ = 0, *p++ = 0;
  char label[32];
  int n = snprintf(label, sizeof label, "q%u-%u", i, tag);
  *p++ = (uint8_t)n;
  memcpy(p, label, (size_t)n), p += n;
  *p++ = (uint8_t)strlen(zone), memcpy(p, zone, strlen(zone)), p += strlen(zone);
  *p++ = 4, memcpy(p, "test", 4), p += 4;
  *p++ = 0;
  *p++ = 0, *p++ = 1, *p++ = 0, *p++ = 1;
  return (int)(p - out);
}

static double cpu_seconds(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static double wall_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

// One fresh socket per query (connect, send, recv, close); `outstanding` of them in flight, waited
// for with poll(), a new one opened as each answer is read.
static int udp_send(const struct sockaddr_in *to, unsigned i, unsigned tag) {
  uint8_t q[512];
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (s < 0) return -1;
  int n = query(q, i & 0xffff, tag);
  if (connect(s, (const struct sockaddr *)to, sizeof *to) != 0 || send(s, q, (size_t)n, 0) != n) {
    close(s);
    return -1;
  }
  return s;
}

static unsigned udp_exchanges(const char *ip, unsigned count, unsigned outstanding, unsigned tag) {
  struct sockaddr_in to = server(ip, 53);
  struct pollfd fds[256];
  uint8_t r[4096];
  unsigned sent = 0, ok = 0, live = 0;
  if (outstanding > 256) outstanding = 256;
  while (live < outstanding && sent < count) {
    int s = udp_send(&to, sent++, tag);
    if (s < 0) return ok;
    fds[live++] = (struct pollfd){.fd = s, .events = POLLIN};
  }
  while (live > 0) {
    if (poll(fds, live, 1000) <= 0) break;  // a lost datagram ends the run (counted as short)
    for (unsigned k = 0; k < live; k++) {
      // POLLERR alone: an ICMP error (port unreachable) on the connected socket; the slot is closed.
      if (!(fds[k].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      if ((fds[k].revents & POLLIN) && recv(fds[k].fd, r, sizeof r, 0) > 12) ok++;
      close(fds[k].fd);
      int s = sent < count ? udp_send(&to, sent++, tag) : -1;
      if (s >= 0) {
        fds[k] = (struct pollfd){.fd = s, .events = POLLIN};
      } else {
        fds[k--] = fds[--live];
      }
    }
  }
  for (unsigned k = 0; k < live; k++) close(fds[k].fd);
  return ok;
}

static int read_full(SSL *ssl, uint8_t *buf, int n) {
  for (int got = 0; got < n;) {
    int k = SSL_read(ssl, buf + got, n - got);
    if (k <= 0) return -1;
    got += k;
  }
  return n;
}

static int write_query(SSL *ssl, unsigned i, unsigned tag) {
  uint8_t framed[514];
  int n = query(framed + 2, i & 0xffff, tag);
  framed[0] = (uint8_t)(n >> 8), framed[1] = (uint8_t)n;
  return SSL_write(ssl, framed, n + 2) == n + 2 ? 0 : -1;
}

static int read_answer(SSL *ssl) {
  uint8_t len[2], r[65536];
  if (read_full(ssl, len, 2) < 0) return -1;
  int n = len[0] << 8 | len[1];
  return read_full(ssl, r, n) < 0 || n < 12 ? -1 : 0;
}

static SSL *dot_connect(const char *ip) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  static const unsigned char alpn[] = {3, 'd', 'o', 't'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  struct sockaddr_in to = server(ip, 853);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(s, (struct sockaddr *)&to, sizeof to) != 0) return NULL;
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, s);
  if (SSL_connect(ssl) != 1) {
    ERR_print_errors_fp(stderr);
    return NULL;
  }
  return ssl;
}

// `outstanding` queries in flight on one connection: the next is written as each answer is read.
static unsigned dot_exchanges(SSL *ssl, unsigned count, unsigned outstanding, unsigned tag) {
  unsigned sent = 0, ok = 0;
  while (sent < outstanding && sent < count)
    if (write_query(ssl, sent++, tag) < 0) return ok;
  while (ok < count) {
    if (read_answer(ssl) < 0) return ok;
    ok++;
    if (sent < count && write_query(ssl, sent++, tag) < 0) return ok;
  }
  return ok;
}

// DoQ: one connection through the shim. Writes what the engine has, then waits (ppoll, to the
// nanosecond) for a datagram or the engine's next expiry.
static int doq_write_all(doq_engine *e, int s) {
  uint8_t buf[1500];
  ssize_t n;
  while ((n = doq_engine_write(e, buf, sizeof buf)) > 0)
    if (send(s, buf, (size_t)n, 0) != n) return -1;
  return n < 0 ? -1 : 0;
}

static int doq_pump(doq_engine *e, int s) {
  uint8_t buf[1500];
  ssize_t n;
  if (doq_write_all(e, s) < 0) return -1;
  int64_t delay = doq_engine_expiry_delay(e);
  struct timespec ts = {.tv_sec = 1};
  if (delay >= 0) ts = (struct timespec){.tv_sec = delay / 1000000000, .tv_nsec = delay % 1000000000};
  struct pollfd p = {.fd = s, .events = POLLIN};
  int r = ppoll(&p, 1, &ts, NULL);
  if (r < 0) return -1;
  if (r > 0)
    while ((n = recv(s, buf, sizeof buf, MSG_DONTWAIT)) > 0)
      if (doq_engine_read(e, buf, (size_t)n) < 0) return -1;
  if (doq_engine_expiry_delay(e) == 0 && doq_engine_handle_expiry(e) < 0) return -1;
  return 0;
}

static doq_engine *doq_connect(const char *ip, int *sock) {
  char err[256];
  doq_context *ctx = doq_context_new(err, sizeof err);
  if (!ctx) return fprintf(stderr, "doq context: %s\n", err), NULL;
  struct sockaddr_in to = server(ip, 853), local;
  socklen_t len = sizeof local;
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(s, (struct sockaddr *)&to, sizeof to) != 0 || getsockname(s, (struct sockaddr *)&local, &len) != 0) return NULL;
  char local_ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &local.sin_addr, local_ip, sizeof local_ip);
  doq_config cfg = {.remote_ip = ip, .remote_port = 853, .local_ip = local_ip, .local_port = ntohs(local.sin_port),
                    .handshake_timeout_ns = 3000000000ull, .idle_timeout_ns = 30000000000ull};
  doq_engine *e = doq_engine_new(ctx, &cfg, err, sizeof err);
  if (!e) return fprintf(stderr, "doq engine: %s\n", err), NULL;
  double deadline = wall_seconds() + 3;
  while (!doq_engine_handshake_confirmed(e) && wall_seconds() < deadline)
    if (doq_pump(e, s) < 0) return NULL;
  doq_event ev;
  while (doq_engine_next_event(e, &ev)) {}
  *sock = s;
  return doq_engine_handshake_confirmed(e) ? e : NULL;
}

static int doq_submit(doq_engine *e, unsigned i, unsigned tag) {
  uint8_t framed[514];
  int n = query(framed + 2, 0, tag + (i << 8));  // Message ID 0 on DoQ (RFC 9250 4.2.1)
  framed[0] = (uint8_t)(n >> 8), framed[1] = (uint8_t)n;
  int64_t id = doq_engine_submit(e, framed, (size_t)n + 2);
  return id >= 0 ? 0 : (int)id;
}

// `outstanding` queries in flight on one connection: a new stream as each answer's FIN comes in,
// each query written at once in a packet of its own (as a resolver's queries go out, one at a time),
// not batched with the next ones.
static unsigned doq_exchanges(doq_engine *e, int s, unsigned count, unsigned outstanding, unsigned tag) {
  unsigned sent = 0, ok = 0, inflight = 0;
  double deadline = wall_seconds() + 60;
  while (ok < count && wall_seconds() < deadline) {
    while (inflight < outstanding && sent < count && doq_submit(e, sent, tag) == 0) {
      sent++, inflight++;
      if (doq_write_all(e, s) < 0) return ok;
    }
    if (doq_pump(e, s) < 0) return ok;
    doq_event ev;
    while (doq_engine_next_event(e, &ev)) {
      if (ev.type == DOQ_EVENT_STREAM_FIN && ev.len > 14) ok++, inflight--;
      else if (ev.type == DOQ_EVENT_STREAM_RESET || ev.type == DOQ_EVENT_STREAM_CLOSED) inflight--;
    }
  }
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s IP udp|dot|doq COUNT [OUTSTANDING [ZONE]]\n", argv[0]);
    return 2;
  }
  const char *ip = argv[1], *mode = argv[2];
  unsigned count = (unsigned)atoi(argv[3]), outstanding = argc > 4 ? (unsigned)atoi(argv[4]) : 1;
  if (argc > 5) zone = argv[5];
  unsigned tag = (unsigned)getpid();
  unsigned warm = count / 10 + 1, ok;
  double cpu0, wall0;
  if (strcmp(mode, "udp") == 0) {
    udp_exchanges(ip, warm, outstanding, tag + 1);
    cpu0 = cpu_seconds(), wall0 = wall_seconds();
    ok = udp_exchanges(ip, count, outstanding, tag);
  } else if (strcmp(mode, "doq") == 0) {
    int s = -1;
    doq_engine *e = doq_connect(ip, &s);  // the handshake is not counted, as for DoT
    if (!e) return 1;
    doq_exchanges(e, s, warm, outstanding, tag + 1);
    cpu0 = cpu_seconds(), wall0 = wall_seconds();
    ok = doq_exchanges(e, s, count, outstanding, tag);
  } else {
    SSL *ssl = dot_connect(ip);  // the handshake is not counted: a session outlives many exchanges
    if (!ssl) return 1;
    dot_exchanges(ssl, warm, outstanding, tag + 1);
    cpu0 = cpu_seconds(), wall0 = wall_seconds();
    ok = dot_exchanges(ssl, count, outstanding, tag);
  }
  double cpu = cpu_seconds() - cpu0, wall = wall_seconds() - wall0;
  printf("%s outstanding=%u exchanges=%u cpu_us=%.1f wall_us=%.1f\n", mode, outstanding, ok, 1e6 * cpu / (ok ? ok : 1),
         1e6 * wall / (ok ? ok : 1));
  return ok == count ? 0 : 1;
}

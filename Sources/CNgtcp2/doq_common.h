#ifndef SOTTO_DOQ_COMMON_H
#define SOTTO_DOQ_COMMON_H

// Helpers shared by the DoQ client engine (CNgtcp2Shim) and the DoQ server engine (CDoQServer):
// clock, error text, socket addresses, and the ngtcp2 callbacks that only need randomness.

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/// TLS 1.3 only (RFC 9001); compat mode off, which QUIC requires (an empty legacy_session_id).
#define DOQ_TLS_PRIORITY                                                                                      \
  "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"          \
  "+CHACHA20-POLY1305:+AES-128-CCM:-GROUP-ALL:+GROUP-SECP256R1:+GROUP-X25519:+GROUP-SECP384R1:"            \
  "+GROUP-SECP521R1"

static inline uint64_t doq_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void doq_set_err(char *err, size_t errlen, const char *what, const char *detail) {
  if (err && errlen) snprintf(err, errlen, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

/// Fills `ss` with ip:port (IPv4 or IPv6 text); -1 when `ip` is neither.
static inline int doq_fill_addr(struct sockaddr_storage *ss, socklen_t *len, const char *ip, uint16_t port) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    *len = sizeof *in4;
    return 0;
  }
  if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    *len = sizeof *in6;
    return 0;
  }
  return -1;
}

static inline void doq_rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static inline int doq_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud) {
  (void)conn;
  (void)ud;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) < 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  cid->datalen = cidlen;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) < 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

#endif

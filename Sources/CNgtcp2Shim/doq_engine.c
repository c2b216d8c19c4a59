// DoQ client engine over ngtcp2 0.12.1 + GnuTLS. See include/doq_engine.h. Everything ngtcp2 and
// GnuTLS allocate is owned by the engine (or context) and freed in doq_engine_free (doq_context_free).

#include "doq_engine.h"

#include "doq_common.h"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <pthread.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>


/// A DoQ response is at most a 2-octet length plus 65535 octets.
#define DOQ_MAX_RESPONSE (65535 + 2)

struct doq_context {
  gnutls_certificate_credentials_t cred;
};

typedef struct doq_stream {
  int64_t id;
  uint8_t *out;
  size_t outlen, sent;
  int fin_sent, blocked, early, done;
  /// When the client gave up on it (doq_engine_cancel), 0 if it did not: a stream still here long
  /// after that is "dangling" (T-39), its server neither answered nor reset it.
  uint64_t cancelled_at;
  uint8_t *in;
  size_t inlen, incap;
  struct doq_stream *next;
} doq_stream;

typedef struct doq_event_node {
  doq_event ev;
  uint8_t *owned;
  struct doq_event_node *next;
} doq_event_node;

struct doq_engine {
  /// The shared context (outlives the engine): its credentials.
  doq_context *ctx;
  /// What the server's certificate is verified against (OpenSSL, one reference held; NULL: none).
  X509_STORE *verify_store;
  /// OpenSSL's security level for the verification (DoT's: weak keys and digests are problems).
  int verify_auth_level;
  ngtcp2_conn *conn;
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref ref;
  ngtcp2_path_storage ps;
  doq_stream *streams;
  doq_event_node *head, *tail, *popped;
  int completed, confirmed, early_key, early_sent, early_state, rtt_seen;
  /// When the hold began (0: nothing read since the last packet written; see holding_ack): the
  /// first datagram read after that write, or the first that carried an answer (stream data or a
  /// stream reset), if one did. A server's ACK-only datagram owes nothing: an answer more than the
  /// hold after it still gets the whole hold.
  uint64_t read_since_write;
  /// When the first datagram was read after the last packet written (0: none since): no hold
  /// lasts beyond DOQ_ACK_HOLD_CAP_NS after it.
  uint64_t first_read_since_write;
  /// Whether an answer was read since the last packet written.
  int answer_since_write;
  /// Answer frames (stream data deliveries and stream resets) seen by the callbacks, ever.
  uint64_t answer_frames;
  /// Stream data deliveries since the last packet written (each came in an ack-eliciting packet).
  unsigned stream_frames_since_write;
  /// No ACK hold (see holding_ack): a stream was cancelled and its RESET_STREAM/STOP_SENDING
  /// waits to be written (until the next write), or a query could not open a stream for want of
  /// stream credit, which the server returns only once our ACKs reach it (until credit comes).
  int reset_unsent, streams_blocked;
  uint64_t unusable;
  char remote_ip[INET6_ADDRSTRLEN];
  char expected[256];
  unsigned cert_problems;
  int cert_seen;
  char subject[512];
  int64_t not_after;
  /// The verdict carried by the resumption blob (used when the handshake resumes).
  unsigned blob_problems;
  char blob_subject[512];
  int64_t blob_not_after;
  int have_blob;
};

// MARK: events

static void push_event(doq_engine *e, int type, int64_t sid, uint64_t code, const uint8_t *data, size_t len) {
  doq_event_node *n = calloc(1, sizeof *n);
  if (!n) return;
  if (data && len) {
    n->owned = malloc(len);
    if (!n->owned) {
      free(n);
      return;
    }
    memcpy(n->owned, data, len);
  }
  n->ev.type = type;
  n->ev.stream_id = sid;
  n->ev.code = code;
  n->ev.data = n->owned;
  n->ev.len = n->owned ? len : 0;
  if (e->tail) e->tail->next = n;
  else e->head = n;
  e->tail = n;
}

static void free_node(doq_event_node *n) {
  if (!n) return;
  free(n->owned);
  free(n);
}

int doq_engine_next_event(doq_engine *e, doq_event *ev) {
  free_node(e->popped);
  e->popped = NULL;
  doq_event_node *n = e->head;
  if (!n) return 0;
  e->head = n->next;
  if (!e->head) e->tail = NULL;
  *ev = n->ev;
  e->popped = n;
  return 1;
}

// MARK: streams

static void free_stream(doq_stream *s) {
  free(s->out);
  free(s->in);
  free(s);
}

static void unlink_stream(doq_engine *e, doq_stream *s) {
  for (doq_stream **p = &e->streams; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      return;
    }
  }
}

// MARK: certificate verdict

/// GnuTLS frees its tables (the ASN.1 definitions, among them) in a library destructor at exit,
/// when its global initialisation count drops to zero. A handshake on the engine thread may still
/// be parsing a certificate then: it crashed in asn1_der_decoding2
/// (NULL tables) when a sotto process exited under ThreadSanitizer in CI. One reference of our
/// own, never given back, keeps them for the life of the process (as OPENSSL_INIT_NO_ATEXIT does
/// for OpenSSL in DoTClientContext).
static pthread_once_t gnutls_kept = PTHREAD_ONCE_INIT;
static void keep_gnutls(void) { (void)gnutls_global_init(); }

/// The problem bit for an OpenSSL verification error (the names DoT reports for the same codes).
static unsigned problem_of(int code) {
  switch (code) {
  case X509_V_OK: return 0;
  case X509_V_ERR_CERT_HAS_EXPIRED: return DOQ_CERT_EXPIRED;
  case X509_V_ERR_CERT_NOT_YET_VALID: return DOQ_CERT_NOT_YET_VALID;
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return DOQ_CERT_SELF_SIGNED;
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_CERT_UNTRUSTED: return DOQ_CERT_UNTRUSTED_ISSUER;
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH: return DOQ_CERT_WRONG_NAME;
  default: return DOQ_CERT_OTHER;
  }
}

/// Unix seconds of an ASN.1 time, -1 if it cannot be read.
static int64_t unix_time(const ASN1_TIME *t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return -1;
  return (int64_t)timegm(&tm);
}

/// Runs during every full handshake: records the verification outcome and always accepts (OE-26).
/// The chain as sent is verified with OpenSSL against the store DoT uses too (`TrustStore`), with
/// the checks libssl makes for DoT (TLS server purpose, the security level), so a certificate
/// gets the same problems over both; dates and the name are checked on the leaf as well, since
/// OpenSSL's verification stops at its first error. Any other problem of OpenSSL's is "other"
/// with its X509_V_ERR_* code in the upper bits (DOQ_CERT_OTHER_CODE_SHIFT), which the resumption
/// blob keeps as well. A chain of more than 16, or one that does not parse, is "other" with no code. A stapled OCSP response is not looked at.
static int verify_cb(gnutls_session_t session) {
  ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
  if (!ref || !ref->user_data) return 0;
  doq_engine *e = ref->user_data;
  const char *host = e->expected[0] ? e->expected : e->remote_ip;
  e->cert_seen = 1;
  e->cert_problems = 0;
  e->subject[0] = 0;
  e->not_after = -1;
  unsigned int n = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
  if (!certs || n == 0) {
    e->cert_problems = DOQ_CERT_NONE;
    return 0;
  }
  const unsigned char *der = certs[0].data;
  X509 *leaf = d2i_X509(NULL, &der, (long)certs[0].size);
  if (!leaf) {
    e->cert_problems = DOQ_CERT_OTHER;
    ERR_clear_error();
    return 0;
  }
  unsigned problems = 0;
  // The rest of the chain as sent; one that does not parse, or longer than 16, is "other".
  STACK_OF(X509) *chain = sk_X509_new_null();
  int unusable = !chain || n > 16;
  for (unsigned i = 1; !unusable && i < n; i++) {
    der = certs[i].data;
    X509 *c = d2i_X509(NULL, &der, (long)certs[i].size);
    if (!c || !sk_X509_push(chain, c)) {
      X509_free(c);
      unusable = 1;
    }
  }
  X509_STORE_CTX *vctx = unusable || !e->verify_store ? NULL : X509_STORE_CTX_new();
  if (vctx && X509_STORE_CTX_init(vctx, e->verify_store, leaf, chain) == 1) {
    // As libssl's ssl_verify_cert_chain for a client: a TLS server's purpose and trust, and the
    // security level (a SHA-1 signature or a 1024-bit RSA key is a problem at level 2).
    (void)X509_STORE_CTX_set_default(vctx, "ssl_server");
    if (e->verify_auth_level > 0) X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(vctx), e->verify_auth_level);
    if (X509_verify_cert(vctx) != 1) {
      int code = X509_STORE_CTX_get_error(vctx);
      unsigned p = problem_of(code);
      problems |= p ? p : DOQ_CERT_OTHER;
      if (p == DOQ_CERT_OTHER && code > 0 && code <= 0xffff) problems |= (unsigned)code << DOQ_CERT_OTHER_CODE_SHIFT;
    }
  } else {
    problems |= DOQ_CERT_OTHER;
  }
  X509_STORE_CTX_free(vctx);
  sk_X509_pop_free(chain, X509_free);
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) problems |= DOQ_CERT_EXPIRED;
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) problems |= DOQ_CERT_NOT_YET_VALID;
  unsigned char ip[16];
  int matches;
  if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
    matches = X509_check_ip_asc(leaf, host, 0) == 1;
  else
    matches = X509_check_host(leaf, host, strlen(host), 0, NULL) == 1;
  if (!matches) problems |= DOQ_CERT_WRONG_NAME;
  char *line = X509_NAME_oneline(X509_get_subject_name(leaf), NULL, 0);
  if (line) {
    snprintf(e->subject, sizeof e->subject, "%s", line);
    OPENSSL_free(line);
  }
  e->not_after = unix_time(X509_get0_notAfter(leaf));
  e->cert_problems = problems;
  X509_free(leaf);
  ERR_clear_error();
  return 0;
}

doq_context *doq_context_new(char *err, size_t errlen) {
  pthread_once(&gnutls_kept, keep_gnutls);
  doq_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    doq_set_err(err, errlen, "out of memory", NULL);
    return NULL;
  }
  int rv = gnutls_certificate_allocate_credentials(&ctx->cred);
  if (rv < 0) {
    doq_set_err(err, errlen, "gnutls_certificate_allocate_credentials", gnutls_strerror(rv));
    free(ctx);
    return NULL;
  }
  gnutls_certificate_set_verify_function(ctx->cred, verify_cb);
  return ctx;
}

void doq_context_free(doq_context *ctx) {
  if (!ctx) return;
  gnutls_certificate_free_credentials(ctx->cred);
  free(ctx);
}

// MARK: resumption blob
// "DQ1" | u16 session length | session | u16 params length | params | u32 cert problems |
// i64 notAfter | u16 subject length | subject. All integers big-endian.

static void put_u(uint8_t **p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) *(*p)++ = (uint8_t)(v >> (8 * i));
}

static int get_u(const uint8_t **p, const uint8_t *end, int bytes, uint64_t *v) {
  if (end - *p < bytes) return -1;
  *v = 0;
  for (int i = 0; i < bytes; i++) *v = (*v << 8) | *(*p)++;
  return 0;
}

static int ticket_hook(gnutls_session_t session, unsigned int htype, unsigned when, unsigned int incoming,
                       const gnutls_datum_t *msg) {
  (void)msg;
  if (htype != GNUTLS_HANDSHAKE_NEW_SESSION_TICKET || when != GNUTLS_HOOK_POST || !incoming) return 0;
  ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
  if (!ref || !ref->user_data) return 0;
  doq_engine *e = ref->user_data;
  gnutls_datum_t data = {NULL, 0};
  if (gnutls_session_get_data2(session, &data) < 0 || !data.data) return 0;
  uint8_t params[512];
  ngtcp2_ssize plen = 0;
  const ngtcp2_transport_params *tp = ngtcp2_conn_get_remote_transport_params(e->conn);
  if (tp)
    plen = ngtcp2_encode_transport_params(params, sizeof params, NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS,
                                          tp);
  if (plen < 0) plen = 0;
  unsigned problems = e->cert_seen ? e->cert_problems : (e->have_blob ? e->blob_problems : DOQ_CERT_NONE);
  const char *subject = e->cert_seen ? e->subject : (e->have_blob ? e->blob_subject : "");
  int64_t not_after = e->cert_seen ? e->not_after : (e->have_blob ? e->blob_not_after : -1);
  size_t slen = strlen(subject);
  if (data.size <= 0xffff) {
    size_t total = 3 + 2 + data.size + 2 + (size_t)plen + 4 + 8 + 2 + slen;
    uint8_t *blob = malloc(total);
    if (blob) {
      uint8_t *p = blob;
      memcpy(p, "DQ1", 3);
      p += 3;
      put_u(&p, data.size, 2);
      memcpy(p, data.data, data.size);
      p += data.size;
      put_u(&p, (uint64_t)plen, 2);
      memcpy(p, params, (size_t)plen);
      p += plen;
      put_u(&p, problems, 4);
      put_u(&p, (uint64_t)not_after, 8);
      put_u(&p, slen, 2);
      memcpy(p, subject, slen);
      push_event(e, DOQ_EVENT_TICKET, -1, 0, blob, total);
      free(blob);
    }
  }
  gnutls_free(data.data);
  return 0;
}

/// Applies a resumption blob: TLS session data and (for 0-RTT) the server's transport parameters.
static void apply_blob(doq_engine *e, const uint8_t *blob, size_t len, int early) {
  const uint8_t *p = blob, *end = blob + len;
  uint64_t slen, plen, problems, not_after, subjlen;
  if (len < 3 || memcmp(p, "DQ1", 3) != 0) return;
  p += 3;
  if (get_u(&p, end, 2, &slen) || (uint64_t)(end - p) < slen) return;
  const uint8_t *session = p;
  p += slen;
  if (get_u(&p, end, 2, &plen) || (uint64_t)(end - p) < plen) return;
  const uint8_t *params = p;
  p += plen;
  if (get_u(&p, end, 4, &problems) || get_u(&p, end, 8, &not_after) || get_u(&p, end, 2, &subjlen) ||
      (uint64_t)(end - p) < subjlen || subjlen >= sizeof e->blob_subject)
    return;
  gnutls_datum_t d = {(unsigned char *)session, (unsigned int)slen};
  if (gnutls_session_set_data(e->tls, d.data, d.size) < 0) return;
  e->have_blob = 1;
  e->blob_problems = (unsigned)problems;
  e->blob_not_after = (int64_t)not_after;
  memcpy(e->blob_subject, p, subjlen);
  e->blob_subject[subjlen] = 0;
  if (early && plen > 0) {
    ngtcp2_transport_params tp;
    if (ngtcp2_decode_transport_params(&tp, NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS, params, plen) == 0)
      ngtcp2_conn_set_early_remote_transport_params(e->conn, &tp);
  }
}

// MARK: ngtcp2 callbacks

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) { return ((doq_engine *)ref->user_data)->conn; }

static int recv_tx_key_cb(ngtcp2_conn *conn, ngtcp2_crypto_level level, void *ud) {
  (void)conn;
  if (level == NGTCP2_CRYPTO_LEVEL_EARLY) ((doq_engine *)ud)->early_key = 1;
  return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  doq_engine *e = ud;
  e->completed = 1;
  if (e->early_sent) {
    // The GnuTLS helper does not report a 0-RTT rejection itself.
    if (gnutls_session_get_flags(e->tls) & GNUTLS_SFLAGS_EARLY_DATA) {
      e->early_state = 1;
    } else {
      e->early_state = 0;
      for (doq_stream *s = e->streams; s; s = s->next)
        if (s->early) s->done = 1;
      if (ngtcp2_conn_early_data_rejected(conn) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
      push_event(e, DOQ_EVENT_EARLY_DATA_REJECTED, -1, 0, NULL, 0);
    }
  }
  push_event(e, DOQ_EVENT_HANDSHAKE_COMPLETED, -1, 0, NULL, 0);
  return 0;
}

static int handshake_confirmed_cb(ngtcp2_conn *conn, void *ud) {
  (void)conn;
  doq_engine *e = ud;
  e->confirmed = 1;
  push_event(e, DOQ_EVENT_HANDSHAKE_CONFIRMED, -1, 0, NULL, 0);
  return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud, void *sud) {
  (void)offset;
  doq_engine *e = ud;
  doq_stream *s = sud;
  e->stream_frames_since_write++;
  e->answer_frames++;
  // Flow-control credit is returned at once: responses are consumed as they arrive.
  ngtcp2_conn_extend_max_stream_offset(conn, sid, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  if (!s || s->done) return 0;
  if (s->inlen + len > DOQ_MAX_RESPONSE) {
    s->done = 1;
    push_event(e, DOQ_EVENT_STREAM_OVERFLOW, sid, 0, NULL, 0);
    (void)ngtcp2_conn_shutdown_stream(conn, sid, 0x2 /* DOQ_PROTOCOL_ERROR */);
    e->reset_unsent = 1;
    return 0;
  }
  if (s->inlen + len > s->incap) {
    size_t cap = s->incap ? s->incap : 512;
    while (cap < s->inlen + len) cap *= 2;
    uint8_t *in = realloc(s->in, cap);
    if (!in) return NGTCP2_ERR_CALLBACK_FAILURE;
    s->in = in;
    s->incap = cap;
  }
  if (len) memcpy(s->in + s->inlen, data, len);
  s->inlen += len;
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
    s->done = 1;
    push_event(e, DOQ_EVENT_STREAM_FIN, sid, 0, s->in, s->inlen);
  }
  return 0;
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t sid, uint64_t final_size, uint64_t code, void *ud,
                           void *sud) {
  (void)conn;
  (void)final_size;
  doq_stream *s = sud;
  ((doq_engine *)ud)->answer_frames++;
  if (s && !s->done) {
    s->done = 1;
    push_event(ud, DOQ_EVENT_STREAM_RESET, sid, code, NULL, 0);
  }
  return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t code, void *ud, void *sud) {
  (void)conn;
  doq_engine *e = ud;
  doq_stream *s = sud;
  if (!s) return 0;
  if (!s->done) {
    s->done = 1;
    push_event(e, DOQ_EVENT_STREAM_CLOSED, sid, (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) ? code : 0,
               NULL, 0);
  }
  unlink_stream(e, s);
  free_stream(s);
  return 0;
}

static int extend_streams_cb(ngtcp2_conn *conn, uint64_t max_streams, void *ud) {
  (void)conn;
  (void)max_streams;
  ((doq_engine *)ud)->streams_blocked = 0;
  push_event(ud, DOQ_EVENT_STREAMS_AVAILABLE, -1, 0, NULL, 0);
  return 0;
}

// MARK: lifecycle

doq_engine *doq_engine_new(doq_context *ctx, const doq_config *cfg, char *err, size_t errlen) {
  doq_engine *e = calloc(1, sizeof *e);
  if (!e) {
    doq_set_err(err, errlen, "out of memory", NULL);
    return NULL;
  }
  e->ctx = ctx;
  e->early_state = -1;
  e->not_after = -1;
  e->ref.get_conn = get_conn;
  e->ref.user_data = e;
  snprintf(e->remote_ip, sizeof e->remote_ip, "%s", cfg->remote_ip);
  if (cfg->expected_name) snprintf(e->expected, sizeof e->expected, "%s", cfg->expected_name);

  struct sockaddr_storage local, remote;
  socklen_t locallen = 0, remotelen = 0;
  if (doq_fill_addr(&local, &locallen, cfg->local_ip, cfg->local_port) ||
      doq_fill_addr(&remote, &remotelen, cfg->remote_ip, cfg->remote_port)) {
    doq_set_err(err, errlen, "bad address", cfg->remote_ip);
    free(e);
    return NULL;
  }
  ngtcp2_path_storage_init(&e->ps, (struct sockaddr *)&local, locallen, (struct sockaddr *)&remote, remotelen,
                           NULL);

  unsigned flags = GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA;
  if (cfg->enable_early_data && cfg->resumption) flags |= GNUTLS_ENABLE_EARLY_DATA;
  int rv = gnutls_init(&e->tls, flags);
  if (rv < 0) {
    doq_set_err(err, errlen, "gnutls_init", gnutls_strerror(rv));
    free(e);
    return NULL;
  }
  const char *where = NULL;
  if ((rv = gnutls_priority_set_direct(e->tls, DOQ_TLS_PRIORITY, NULL)) < 0) where = "gnutls_priority_set_direct";
  else if (ngtcp2_crypto_gnutls_configure_client_session(e->tls) != 0) where = "configure_client_session";
  else if ((rv = gnutls_credentials_set(e->tls, GNUTLS_CRD_CERTIFICATE, ctx->cred)) < 0)
    where = "gnutls_credentials_set";
  if (!where) {
    gnutls_datum_t alpn = {(unsigned char *)"doq", 3};
    if ((rv = gnutls_alpn_set_protocols(e->tls, &alpn, 1, 0)) < 0) where = "gnutls_alpn_set_protocols";
  }
  if (where) {
    doq_set_err(err, errlen, where, rv < 0 ? gnutls_strerror(rv) : NULL);
    gnutls_deinit(e->tls);
    free(e);
    return NULL;
  }
  // No gnutls_server_name_set: the ClientHello carries no SNI (T-2).
  gnutls_session_set_ptr(e->tls, &e->ref);
  gnutls_handshake_set_hook_function(e->tls, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET, GNUTLS_HOOK_POST, ticket_hook);

  ngtcp2_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.client_initial = ngtcp2_crypto_client_initial_cb;
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.rand = doq_rand_cb;
  cb.get_new_connection_id = doq_new_cid_cb;
  cb.handshake_completed = handshake_completed_cb;
  cb.handshake_confirmed = handshake_confirmed_cb;
  cb.recv_stream_data = recv_stream_data_cb;
  cb.stream_close = stream_close_cb;
  cb.stream_reset = stream_reset_cb;
  cb.extend_max_local_streams_bidi = extend_streams_cb;
  cb.recv_tx_key = recv_tx_key_cb;

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = doq_now_ns();
  settings.handshake_timeout = cfg->handshake_timeout_ns;
  settings.no_pmtud = 1;

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = 128 * 1024;
  params.initial_max_data = 1024 * 1024;
  params.initial_max_streams_bidi = 0;  // servers may not open streams (T-30)
  params.initial_max_streams_uni = 0;
  params.max_idle_timeout = cfg->idle_timeout_ns;

  ngtcp2_cid dcid, scid;
  dcid.datalen = 18;
  scid.datalen = 17;
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  rv = ngtcp2_conn_client_new(&e->conn, &dcid, &scid, &e->ps.path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params,
                              NULL, e);
  if (rv != 0) {
    doq_set_err(err, errlen, "ngtcp2_conn_client_new", ngtcp2_strerror(rv));
    gnutls_deinit(e->tls);
    free(e);
    return NULL;
  }
  ngtcp2_conn_set_tls_native_handle(e->conn, e->tls);
  if (cfg->resumption && cfg->resumption_len)
    apply_blob(e, cfg->resumption, cfg->resumption_len, cfg->enable_early_data);
  // Taken last, so that no failure above has to give it back.
  if (cfg->verify_store && X509_STORE_up_ref(cfg->verify_store) == 1) e->verify_store = cfg->verify_store;
  e->verify_auth_level = cfg->verify_auth_level;
  return e;
}

void doq_engine_free(doq_engine *e) {
  if (!e) return;
  if (e->conn) ngtcp2_conn_del(e->conn);
  if (e->tls) gnutls_deinit(e->tls);
  while (e->streams) {
    doq_stream *s = e->streams;
    e->streams = s->next;
    free_stream(s);
  }
  while (e->head) {
    doq_event_node *n = e->head;
    e->head = n->next;
    free_node(n);
  }
  free_node(e->popped);
  X509_STORE_free(e->verify_store);
  free(e);
}

// MARK: I/O

int doq_engine_read(doq_engine *e, const uint8_t *pkt, size_t len) {
  // Before the handshake completes, a reply that cannot be QUIC (a plain-DNS FORMERR from a non-QUIC
  // service on the port) is counted as unusable: the probe then fails at once. A long header
  // carries version 1 (or 0 for version negotiation) in octets 1-4 (NSD's FORMERR echoes the
  // Initial's first octets as its DNS ID, so the version is checked, not only the header bit). A
  // short header (1-RTT) is usable if its fixed bit is set (RFC 9000 §17.3): a server's 1-RTT
  // packet can arrive before its Handshake packet (reordering, loss; a 0-RTT query's answer), and
  // ngtcp2 keeps it until the keys are there.
  if (!e->completed) {
    uint32_t version = len >= 5 ? ((uint32_t)pkt[1] << 24 | (uint32_t)pkt[2] << 16 | (uint32_t)pkt[3] << 8 | pkt[4]) : 0;
    int usable = len >= 7 && ((pkt[0] & 0x80) ? (version == 1 || version == 0) : (pkt[0] & 0x40) != 0);
    if (!usable) e->unusable++;
  }
  ngtcp2_pkt_info pi;
  memset(&pi, 0, sizeof pi);
  uint64_t ts = doq_now_ns();
  uint64_t answers_before = e->answer_frames;
  if (!e->read_since_write) e->read_since_write = e->first_read_since_write = ts;
  int rv = ngtcp2_conn_read_pkt(e->conn, &e->ps.path, &pi, pkt, len, ts);
  // The first answer restarts the hold. Timed only from the first datagram, the hold ended too
  // soon when the server's ACK-only came first and its answer more than 5 ms later: the answer's
  // ACK went alone. An ACK owed from before still goes within DOQ_ACK_HOLD_CAP_NS (hold_end).
  if (!e->answer_since_write && e->answer_frames != answers_before) {
    e->answer_since_write = 1;
    e->read_since_write = ts;
  }
  return rv;
}

static doq_stream *next_sendable(doq_engine *e) {
  for (doq_stream *s = e->streams; s; s = s->next)
    if (!s->fin_sent && !s->blocked && !s->done) return s;
  return NULL;
}

/// How long after a datagram's arrival its ACK may wait for a query to ride on. Without this, nearly
/// every DoQ answer cost the client an ACK-only datagram of its own (and a timer, a write and a
/// wake-up of the server): ngtcp2 0.12 acknowledges a lone packet after min(max_ack_delay, smoothed
/// RTT / 8), tens of microseconds on a LAN, and at once when the packet number of an ack-eliciting
/// packet is not one above the previous ack-eliciting one, which is the case after every ACK-only
/// packet from the server. RFC 9000 §13.2.1 asks for the ACK within the max_ack_delay we advertise
/// (ngtcp2's default, 25 ms), and at once when packets are missing or reordered: a real loss is
/// thus reported up to this much later.
#define DOQ_ACK_HOLD_NS (5 * NGTCP2_MILLISECONDS)
/// No hold lasts longer than this after the first datagram read since the last write, whatever
/// restarted it: ngtcp2 sends an ACK owed for that datagram min(25 ms, RTT / 8) after it at the
/// latest once the hold is over, so it still goes within the 25 ms we advertise.
#define DOQ_ACK_HOLD_CAP_NS (20 * NGTCP2_MILLISECONDS)

/// When the current hold ends (read_since_write set).
static uint64_t hold_end(doq_engine *e) {
  uint64_t end = e->read_since_write + DOQ_ACK_HOLD_NS;
  uint64_t cap = e->first_read_since_write + DOQ_ACK_HOLD_CAP_NS;
  return end < cap ? end : cap;
}

static int has_unsent_stream_data(doq_engine *e) {
  for (doq_stream *s = e->streams; s; s = s->next)
    if (!s->fin_sent && !s->done) return 1;
  return 0;
}

/// True while writes are held so that an ACK can ride on the next query: the handshake is
/// confirmed, no query waits to be written, none waits for stream credit, no stream reset waits,
/// at most one stream data delivery came in (§13.2.2: every second ack-eliciting packet is
/// acknowledged at once; other ack-eliciting frames are not counted), and the hold that began with
/// the first datagram, or the first answer, read since the last write has not ended. Whatever else
/// ngtcp2 has to send then (a retransmission, a probe) goes when the hold ends:
/// doq_engine_expiry_delay wakes the caller then.
static int holding_ack(doq_engine *e, uint64_t now) {
  return e->confirmed && e->read_since_write && e->stream_frames_since_write < 2 && !e->reset_unsent &&
         !e->streams_blocked && now < hold_end(e) && !has_unsent_stream_data(e);
}

ssize_t doq_engine_write(doq_engine *e, uint8_t *buf, size_t cap) {
  uint64_t ts = doq_now_ns();
  if (holding_ack(e, ts)) return 0;
  for (doq_stream *s = e->streams; s; s = s->next) s->blocked = 0;
  for (;;) {
    doq_stream *s = next_sendable(e);
    ngtcp2_vec v;
    ngtcp2_ssize consumed = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (s) {
      v.base = s->out + s->sent;
      v.len = s->outlen - s->sent;
      flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(e->conn, &e->ps.path, &pi, buf, cap, &consumed, flags,
                                               s ? s->id : -1, s ? &v : NULL, s ? 1 : 0, ts);
    if (s && consumed >= 0) {
      // Stream data written before the handshake completes with 0-RTT keys installed is early data.
      if (!e->completed && e->early_key) e->early_sent = 1;
      s->sent += (size_t)consumed;
      if (s->sent == s->outlen) s->fin_sent = 1;
    }
    if (n == NGTCP2_ERR_WRITE_MORE) {
      if (s) continue;
      return 0;
    }
    if (s && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
              n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
      s->blocked = 1;
      continue;
    }
    if (n > 0) {
      // ngtcp2 puts a pending ACK in any packet once it is due (min(max_ack_delay, RTT / 8) after
      // the packet it acknowledges); one not yet due when a query goes out is sent by ngtcp2's own
      // timer, no longer held.
      e->read_since_write = e->first_read_since_write = 0;
      e->answer_since_write = 0;
      e->stream_frames_since_write = 0;
      e->reset_unsent = 0;
      // Pacing starts only after the first RTT sample: 0.12.1 otherwise paces from the 333 ms
      // initial RTT and holds the first query after the handshake back by ~20 ms.
      if (!e->rtt_seen) {
        ngtcp2_conn_stat st;
        ngtcp2_conn_get_conn_stat(e->conn, &st);
        e->rtt_seen = st.latest_rtt > 0;
      }
      if (e->rtt_seen) ngtcp2_conn_update_pkt_tx_time(e->conn, ts);
    }
    return n;
  }
}

int64_t doq_engine_expiry_delay(doq_engine *e) {
  ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(e->conn);
  uint64_t now = doq_now_ns();
  // While writes are held the timer fires when the hold ends, whatever ngtcp2's own expiry: an
  // earlier one (its delayed ACK) waits, and a later one may hide an ACK still owed (an expiry
  // handled during the hold switches ngtcp2's delayed-ACK timer off, the ACK itself stays due).
  if (holding_ack(e, now)) expiry = hold_end(e);
  if (expiry == UINT64_MAX) return -1;
  return expiry > now ? (int64_t)(expiry - now) : 0;
}

int doq_engine_handle_expiry(doq_engine *e) { return ngtcp2_conn_handle_expiry(e->conn, doq_now_ns()); }

int64_t doq_engine_submit(doq_engine *e, const uint8_t *data, size_t len) {
  doq_stream *s = calloc(1, sizeof *s);
  if (!s) return NGTCP2_ERR_NOMEM;
  s->out = malloc(len ? len : 1);
  if (!s->out) {
    free(s);
    return NGTCP2_ERR_NOMEM;
  }
  memcpy(s->out, data, len);
  s->outlen = len;
  int rv = ngtcp2_conn_open_bidi_stream(e->conn, &s->id, s);
  if (rv != 0) {
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) e->streams_blocked = 1;
    free_stream(s);
    return rv;
  }
  if (!e->completed) s->early = 1;
  // Append, so streams are sent in submission order.
  doq_stream **p = &e->streams;
  while (*p) p = &(*p)->next;
  *p = s;
  return s->id;
}

void doq_engine_cancel(doq_engine *e, int64_t stream_id, uint64_t code) {
  for (doq_stream *s = e->streams; s; s = s->next) {
    if (s->id == stream_id) {
      s->done = 1;
      if (!s->cancelled_at) s->cancelled_at = doq_now_ns() | 1;
      (void)ngtcp2_conn_shutdown_stream(e->conn, stream_id, code);
      e->reset_unsent = 1;
      return;
    }
  }
}

size_t doq_engine_dangling(doq_engine *e, uint64_t older_than_ns) {
  // A reset on its way may need a few loss-recovery rounds on a slow or lossy path.
  uint64_t pto3 = 3 * (uint64_t)ngtcp2_conn_get_pto(e->conn);
  if (pto3 > older_than_ns) older_than_ns = pto3;
  uint64_t now = doq_now_ns();
  size_t n = 0;
  for (doq_stream *s = e->streams; s; s = s->next)
    if (s->cancelled_at && now - s->cancelled_at >= older_than_ns) n++;
  return n;
}

ssize_t doq_engine_write_close(doq_engine *e, uint64_t app_code, int liberr, uint8_t *buf, size_t cap) {
  ngtcp2_connection_close_error ccerr;
  if (liberr) ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, NULL, 0);
  else ngtcp2_connection_close_error_set_application_error(&ccerr, app_code, NULL, 0);
  ngtcp2_pkt_info pi;
  return ngtcp2_conn_write_connection_close(e->conn, &e->ps.path, &pi, buf, cap, &ccerr, doq_now_ns());
}

// MARK: accessors

void doq_engine_peer_close(doq_engine *e, int *is_app, uint64_t *code) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_conn_get_connection_close_error(e->conn, &ccerr);
  switch (ccerr.type) {
  case NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION: *is_app = 1; break;
  case NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT_IDLE_CLOSE: *is_app = 2; break;
  default: *is_app = 0; break;
  }
  *code = ccerr.error_code;
}

int doq_engine_handshake_completed(doq_engine *e) { return e->completed; }
int doq_engine_handshake_confirmed(doq_engine *e) { return e->confirmed; }
int doq_engine_resumed(doq_engine *e) { return gnutls_session_is_resumed(e->tls) ? 1 : 0; }

uint64_t doq_engine_idle_timeout(doq_engine *e) {
  const ngtcp2_transport_params *local = ngtcp2_conn_get_local_transport_params(e->conn);
  const ngtcp2_transport_params *remote = ngtcp2_conn_get_remote_transport_params(e->conn);
  uint64_t ours = local ? local->max_idle_timeout : 0;
  uint64_t theirs = remote ? remote->max_idle_timeout : 0;
  if (ours == 0) return theirs;
  if (theirs == 0) return ours;
  return ours < theirs ? ours : theirs;
}
int doq_engine_early_data_state(doq_engine *e) { return e->early_sent ? e->early_state : -1; }
uint64_t doq_engine_unusable_datagrams(doq_engine *e) { return e->unusable; }
uint8_t doq_engine_tls_alert(doq_engine *e) { return ngtcp2_conn_get_tls_alert(e->conn); }

int doq_engine_alpn(doq_engine *e, char *buf, size_t cap) {
  gnutls_datum_t proto = {NULL, 0};
  if (gnutls_alpn_get_selected_protocol(e->tls, &proto) < 0 || !proto.data || cap == 0) return -1;
  size_t n = proto.size < cap - 1 ? proto.size : cap - 1;
  memcpy(buf, proto.data, n);
  buf[n] = 0;
  return (int)n;
}

void doq_engine_tls_version(doq_engine *e, char *buf, size_t cap) {
  const char *name = gnutls_protocol_get_name(gnutls_protocol_get_version(e->tls));
  snprintf(buf, cap, "%s", name ? name : "unknown");
}

static int use_blob_verdict(doq_engine *e) { return !e->cert_seen && e->have_blob && doq_engine_resumed(e); }

unsigned doq_engine_cert_problems(doq_engine *e) {
  if (use_blob_verdict(e)) return e->blob_problems;
  return e->cert_seen ? e->cert_problems : DOQ_CERT_NONE;
}

void doq_engine_cert_subject(doq_engine *e, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", use_blob_verdict(e) ? e->blob_subject : e->subject);
}

int64_t doq_engine_cert_not_after(doq_engine *e) { return use_blob_verdict(e) ? e->blob_not_after : e->not_after; }

const char *doq_strerror(int liberr) { return ngtcp2_strerror(liberr); }

// DoQ server over ngtcp2 0.12.1 + GnuTLS. See include/doq_server.h. One `doqs_server` owns every
// connection, stream and event it creates; doqs_server_free releases all of it.

#include "doq_server.h"

#include "doq_common.h"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>


#define DOQS_SCID_LEN 16
#define DOQS_MAX_MESSAGE (65535 + 2)
#define DOQ_PROTOCOL_ERROR 0x2
/// Stateless packets (Retry, INVALID_TOKEN close) waiting to be written; more new clients in one
/// read burst are dropped.
#define DOQS_RETRY_QUEUE 64
/// How long a Retry token is accepted after it was made.
#define DOQS_RETRY_TOKEN_TIMEOUT (10 * NGTCP2_SECONDS)

/// A Retry packet, or a CONNECTION_CLOSE for an invalid Retry token, to write (server-level: it
/// belongs to no connection).
typedef struct dq_retry {
  uint8_t buf[256];
  size_t len;
  char ip[INET6_ADDRSTRLEN];
  uint16_t port;
  uint8_t tag[DOQS_TAG_MAX];
  size_t taglen;
} dq_retry;

typedef struct dq_stream {
  int64_t id;
  uint8_t *in;
  size_t inlen, incap;
  uint8_t *out;
  size_t outlen, sent;
  int answered, fin_sent, blocked, done;
  struct dq_stream *next;
} dq_stream;

/// A certificate and key, shared by the server (for new connections) and each connection whose
/// handshake took them: a reload (doqs_server_set_identity) gives new connections a new one while
/// older connections keep theirs. Freed with its last holder. One event loop: no atomics needed.
typedef struct dq_cred {
  gnutls_certificate_credentials_t cred;
  unsigned refs;
} dq_cred;

static void release_cred(dq_cred *c) {
  if (c && --c->refs == 0) {
    gnutls_certificate_free_credentials(c->cred);
    free(c);
  }
}

/// A dq_cred for the PEM chain and key, holding one reference; NULL + message in `err` on failure.
static dq_cred *make_cred(const char *cert_pem, const char *key_pem, char *err, size_t errlen) {
  dq_cred *c = calloc(1, sizeof *c);
  if (!c) {
    doq_set_err(err, errlen, "calloc", "out of memory");
    return NULL;
  }
  int rv = gnutls_certificate_allocate_credentials(&c->cred);
  if (rv < 0) {
    doq_set_err(err, errlen, "gnutls_certificate_allocate_credentials", gnutls_strerror(rv));
    free(c);
    return NULL;
  }
  gnutls_datum_t cert = {(unsigned char *)cert_pem, (unsigned int)strlen(cert_pem)};
  gnutls_datum_t key = {(unsigned char *)key_pem, (unsigned int)strlen(key_pem)};
  rv = gnutls_certificate_set_x509_key_mem(c->cred, &cert, &key, GNUTLS_X509_FMT_PEM);
  if (rv < 0) {
    doq_set_err(err, errlen, "certificate or key", gnutls_strerror(rv));
    gnutls_certificate_free_credentials(c->cred);
    free(c);
    return NULL;
  }
  c->refs = 1;
  return c;
}

typedef struct dq_conn {
  uint64_t id;
  struct doqs_server *server;
  ngtcp2_conn *conn;
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref ref;
  ngtcp2_path_storage ps;
  ngtcp2_cid odcid;
  char remote_ip[INET6_ADDRSTRLEN];
  uint16_t remote_port;
  /// The read tag of the datagram that opened the connection (doqs_server_set_read_tag).
  uint8_t tag[DOQS_TAG_MAX];
  size_t taglen;
  dq_stream *streams;
  uint8_t closebuf[1500];
  size_t closelen;
  int closing, dead, completed;
  uint64_t close_code;
  /// The identity its handshake uses (one reference).
  dq_cred *cred;
  struct dq_conn *next;
} dq_conn;

typedef struct dq_event_node {
  doqs_event ev;
  uint8_t *owned;
  struct dq_event_node *next;
} dq_event_node;

struct doqs_server {
  /// The identity new connections get (one reference).
  dq_cred *cred;
  gnutls_datum_t ticket_key;
  gnutls_anti_replay_t anti_replay;
  struct sockaddr_storage local;
  socklen_t locallen;
  uint64_t handshake_timeout, idle_timeout;
  /// Open connections at most; a new client over it is dropped (0: no limit).
  uint64_t max_conns;
  /// Longest message a stream may carry, its 2-octet length prefix included.
  size_t max_message;
  uint64_t next_id;
  dq_conn *conns;
  dq_event_node *head, *tail, *popped;
  doqs_stats stats;
  /// Key material of Retry tokens, random per server.
  uint8_t retry_secret[32];
  dq_retry retries[DOQS_RETRY_QUEUE];
  size_t nretries;
  /// The tag of the datagrams read now, and of the datagram written last.
  uint8_t read_tag[DOQS_TAG_MAX], write_tag[DOQS_TAG_MAX];
  size_t read_taglen, write_taglen;
};

void doqs_server_set_read_tag(doqs_server *s, const void *tag, size_t len) {
  s->read_taglen = tag && len <= DOQS_TAG_MAX ? len : 0;
  if (s->read_taglen) memcpy(s->read_tag, tag, s->read_taglen);
}

size_t doqs_server_write_tag(const doqs_server *s, void *out, size_t cap) {
  if (!out || s->write_taglen > cap) return 0;
  memcpy(out, s->write_tag, s->write_taglen);
  return s->write_taglen;
}

/// Hands `tag` to the next doqs_server_write_tag.
static void set_write_tag(doqs_server *s, const uint8_t *tag, size_t len) {
  memcpy(s->write_tag, tag, len);
  s->write_taglen = len;
}

// MARK: events

static void push_event(doqs_server *s, int type, uint64_t conn, int64_t sid, uint64_t code, const uint8_t *data,
                       size_t len) {
  dq_event_node *n = calloc(1, sizeof *n);
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
  n->ev.conn = conn;
  n->ev.stream_id = sid;
  n->ev.code = code;
  n->ev.data = n->owned;
  n->ev.len = n->owned ? len : 0;
  if (s->tail) s->tail->next = n;
  else s->head = n;
  s->tail = n;
}

static void free_node(dq_event_node *n) {
  if (!n) return;
  free(n->owned);
  free(n);
}

int doqs_server_next_event(doqs_server *s, doqs_event *ev) {
  free_node(s->popped);
  s->popped = NULL;
  dq_event_node *n = s->head;
  if (!n) return 0;
  s->head = n->next;
  if (!s->head) s->tail = NULL;
  *ev = n->ev;
  s->popped = n;
  return 1;
}

// MARK: streams and connections

static void free_stream(dq_stream *st) {
  free(st->in);
  free(st->out);
  free(st);
}

static dq_stream *find_stream(dq_conn *c, int64_t sid) {
  for (dq_stream *st = c->streams; st; st = st->next)
    if (st->id == sid) return st;
  return NULL;
}

static void free_conn(dq_conn *c) {
  if (c->conn) ngtcp2_conn_del(c->conn);
  if (c->tls) gnutls_deinit(c->tls);
  release_cred(c->cred);
  while (c->streams) {
    dq_stream *st = c->streams;
    c->streams = st->next;
    free_stream(st);
  }
  free(c);
}

static dq_conn *find_conn_by_id(doqs_server *s, uint64_t id) {
  for (dq_conn *c = s->conns; c; c = c->next)
    if (c->id == id && !c->dead) return c;
  return NULL;
}

/// Removes connections marked dead (their close packet, if any, has been sent).
static void reap(doqs_server *s) {
  for (dq_conn **p = &s->conns; *p;) {
    dq_conn *c = *p;
    if (c->dead && c->closelen == 0) {
      *p = c->next;
      push_event(s, DOQS_EVENT_CONNECTION_CLOSED, c->id, -1, c->close_code, NULL, 0);
      if (s->stats.open) s->stats.open--;
      free_conn(c);
    } else {
      p = &c->next;
    }
  }
}

static int cid_matches(const ngtcp2_cid *cid, const uint8_t *data, size_t len) {
  return cid->datalen == len && memcmp(cid->data, data, len) == 0;
}

static dq_conn *find_conn_by_dcid(doqs_server *s, const uint8_t *dcid, size_t len) {
  for (dq_conn *c = s->conns; c; c = c->next) {
    if (c->dead) continue;
    if (cid_matches(&c->odcid, dcid, len)) return c;
    // ngtcp2_conn_get_scid writes all of them, retired ones still kept included: the buffer must
    // hold ngtcp2_conn_get_num_scid() entries (a client that retires IDs can make it more than 8).
    ngtcp2_cid local[8];
    size_t n = ngtcp2_conn_get_num_scid(c->conn);
    ngtcp2_cid *scids = n <= 8 ? local : malloc(n * sizeof *scids);
    if (!scids) continue;
    n = ngtcp2_conn_get_scid(c->conn, scids);
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) found = cid_matches(&scids[i], dcid, len);
    if (scids != local) free(scids);
    if (found) return c;
  }
  return NULL;
}

/// Writes the connection's CONNECTION_CLOSE with `ccerr` into its close buffer (sent by the next
/// write) and marks it dead.
static void queue_close(dq_conn *c, const ngtcp2_connection_close_error *ccerr) {
  ngtcp2_pkt_info pi;
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &c->ps.path, &pi, c->closebuf, sizeof c->closebuf,
                                                      ccerr, doq_now_ns());
  c->closelen = n > 0 ? (size_t)n : 0;
  c->dead = 1;
}

/// Fatal error on a connection: queue a CONNECTION_CLOSE (unless the peer already closed) and drop it.
static void fail_conn(dq_conn *c, int liberr) {
  if (c->dead) return;
  c->dead = 1;
  c->close_code = (uint64_t)(-liberr);
  if (liberr == NGTCP2_ERR_DRAINING || liberr == NGTCP2_ERR_IDLE_CLOSE || liberr == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
    c->closelen = 0;
    if (liberr == NGTCP2_ERR_IDLE_CLOSE) c->close_code = 0;
    return;
  }
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, NULL, 0);
  queue_close(c, &ccerr);
}

// MARK: ngtcp2 callbacks

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) { return ((dq_conn *)ref->user_data)->conn; }

static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  (void)conn;
  dq_conn *c = ud;
  c->completed = 1;
  c->server->stats.handshakes++;
  // Tickets go out after the handshake (GNUTLS_NO_AUTO_SEND_TICKET), as QUIC needs (OE-23 peers).
  (void)gnutls_session_ticket_send(c->tls, 1, 0);
  push_event(c->server, DOQS_EVENT_HANDSHAKE_COMPLETED, c->id, -1, 0, NULL, 0);
  return 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t sid, void *ud) {
  dq_conn *c = ud;
  dq_stream *st = calloc(1, sizeof *st);
  if (!st) return NGTCP2_ERR_CALLBACK_FAILURE;
  st->id = sid;
  st->next = c->streams;
  c->streams = st;
  ngtcp2_conn_set_stream_user_data(conn, sid, st);
  return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t offset, const uint8_t *data,
                               size_t len, void *ud, void *sud) {
  (void)offset;
  dq_conn *c = ud;
  dq_stream *st = sud;
  // The stream's window is never extended: its initial size (one octet over the longest message)
  // bounds what a client can make us buffer per stream, out-of-order data included.
  ngtcp2_conn_extend_max_offset(conn, len);
  if (!st || st->done) return 0;
  if (st->inlen + len > c->server->max_message) {
    st->done = 1;
    c->server->stats.malformed++;
    (void)ngtcp2_conn_shutdown_stream(conn, sid, DOQ_PROTOCOL_ERROR);
    return 0;
  }
  if (st->inlen + len > st->incap) {
    size_t cap = st->incap ? st->incap : 512;
    while (cap < st->inlen + len) cap *= 2;
    uint8_t *in = realloc(st->in, cap);
    if (!in) return NGTCP2_ERR_CALLBACK_FAILURE;
    st->in = in;
    st->incap = cap;
  }
  if (len) memcpy(st->in + st->inlen, data, len);
  st->inlen += len;
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
    st->done = 1;
    // RFC 9250 §4.2: exactly one message, with its 2-octet length, per stream.
    size_t mlen = st->inlen >= 2 ? ((size_t)st->in[0] << 8 | st->in[1]) : 0;
    if (st->inlen < 2 + 12 || mlen != st->inlen - 2) {
      (void)ngtcp2_conn_shutdown_stream(conn, sid, DOQ_PROTOCOL_ERROR);
      c->server->stats.resets++;
      c->server->stats.malformed++;
      return 0;
    }
    if (c->closing) {
      // Closing after its last answer: later queries are cancelled (DOQ_REQUEST_CANCELLED).
      (void)ngtcp2_conn_shutdown_stream(conn, sid, 0x3);
      return 0;
    }
    c->server->stats.queries++;
    push_event(c->server, DOQS_EVENT_QUERY, c->id, sid, 0, st->in + 2, mlen);
  }
  return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t code, void *ud, void *sud) {
  (void)flags;
  (void)code;
  dq_conn *c = ud;
  dq_stream *st = sud;
  if (st) {
    for (dq_stream **p = &c->streams; *p; p = &(*p)->next) {
      if (*p == st) {
        *p = st->next;
        break;
      }
    }
    free_stream(st);
  }
  // Let the client open another stream in place of this one.
  if (ngtcp2_is_bidi_stream(sid)) (void)ngtcp2_conn_extend_max_streams_bidi(conn, 1);
  return 0;
}

// MARK: server

static int anti_replay_add(void *ptr, time_t exp, const gnutls_datum_t *key, const gnutls_datum_t *data) {
  (void)ptr;
  (void)exp;
  (void)key;
  (void)data;
  // Every 0-RTT ClientHello is accepted (no replay database): DNS queries are replayable
  // transactions (RFC 9250 §4.5), and the resolver acts on opcode QUERY only.
  return 0;
}

doqs_server *doqs_server_new(const char *cert_pem, const char *key_pem, const char *local_ip, uint16_t local_port,
                             uint64_t handshake_timeout_ns, uint64_t idle_timeout_ns, char *err, size_t errlen) {
  doqs_server *s = calloc(1, sizeof *s);
  if (!s) {
    doq_set_err(err, errlen, "out of memory", NULL);
    return NULL;
  }
  s->handshake_timeout = handshake_timeout_ns;
  s->max_message = DOQS_MAX_MESSAGE;
  if (gnutls_rnd(GNUTLS_RND_KEY, s->retry_secret, sizeof s->retry_secret) < 0) {
    doq_set_err(err, errlen, "gnutls_rnd", "no random key for Retry tokens");
    free(s);
    return NULL;
  }
  s->idle_timeout = idle_timeout_ns;
  s->next_id = 1;
  if (doq_fill_addr(&s->local, &s->locallen, local_ip, local_port)) {
    doq_set_err(err, errlen, "bad local address", local_ip);
    free(s);
    return NULL;
  }
  s->cred = make_cred(cert_pem, key_pem, err, errlen);
  if (!s->cred) {
    free(s);
    return NULL;
  }
  int rv = gnutls_session_ticket_key_generate(&s->ticket_key);
  if (rv < 0) {
    doq_set_err(err, errlen, "gnutls_session_ticket_key_generate", gnutls_strerror(rv));
    release_cred(s->cred);
    free(s);
    return NULL;
  }
  rv = gnutls_anti_replay_init(&s->anti_replay);
  if (rv < 0) {
    doq_set_err(err, errlen, "gnutls_anti_replay_init", gnutls_strerror(rv));
    gnutls_free(s->ticket_key.data);
    release_cred(s->cred);
    free(s);
    return NULL;
  }
  gnutls_anti_replay_set_add_function(s->anti_replay, anti_replay_add);
  gnutls_anti_replay_set_ptr(s->anti_replay, NULL);
  return s;
}

void doqs_server_free(doqs_server *s) {
  if (!s) return;
  while (s->conns) {
    dq_conn *c = s->conns;
    s->conns = c->next;
    free_conn(c);
  }
  while (s->head) {
    dq_event_node *n = s->head;
    s->head = n->next;
    free_node(n);
  }
  free_node(s->popped);
  gnutls_anti_replay_deinit(s->anti_replay);
  gnutls_free(s->ticket_key.data);
  release_cred(s->cred);
  free(s);
}

int doqs_server_set_identity(doqs_server *s, const char *cert_pem, const char *key_pem, char *err, size_t errlen) {
  dq_cred *next = make_cred(cert_pem, key_pem, err, errlen);
  if (!next) return -1;
  release_cred(s->cred);
  s->cred = next;
  return 0;
}

/// A new connection for a client Initial `hd`; NULL when it cannot be set up.
/// `odcid`: the client's first Destination Connection ID, from a valid Retry token (NULL: no Retry).
static dq_conn *accept_conn(doqs_server *s, const ngtcp2_pkt_hd *hd, const char *ip, uint16_t port,
                            const ngtcp2_cid *odcid) {
  dq_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->server = s;
  c->id = s->next_id++;
  memcpy(c->tag, s->read_tag, s->read_taglen);
  c->taglen = s->read_taglen;
  c->ref.get_conn = get_conn;
  c->ref.user_data = c;
  c->odcid = hd->dcid;
  snprintf(c->remote_ip, sizeof c->remote_ip, "%s", ip);
  c->remote_port = port;
  struct sockaddr_storage remote;
  socklen_t remotelen = 0;
  if (doq_fill_addr(&remote, &remotelen, ip, port)) {
    free(c);
    return NULL;
  }
  ngtcp2_path_storage_init(&c->ps, (struct sockaddr *)&s->local, s->locallen, (struct sockaddr *)&remote, remotelen,
                           NULL);
  if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_AUTO_SEND_TICKET |
                               GNUTLS_NO_END_OF_EARLY_DATA) < 0) {
    free(c);
    return NULL;
  }
  gnutls_datum_t alpn = {(unsigned char *)"doq", 3};
  if (gnutls_priority_set_direct(c->tls, DOQ_TLS_PRIORITY, NULL) < 0 ||
      gnutls_session_ticket_enable_server(c->tls, &s->ticket_key) < 0 ||
      ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0 ||
      gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, s->cred->cred) < 0 ||
      gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) < 0) {
    gnutls_deinit(c->tls);
    free(c);
    return NULL;
  }
  gnutls_anti_replay_enable(c->tls, s->anti_replay);
  gnutls_record_set_max_early_data_size(c->tls, 0xffffffffu);
  gnutls_session_set_ptr(c->tls, &c->ref);

  ngtcp2_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.rand = doq_rand_cb;
  cb.get_new_connection_id = doq_new_cid_cb;
  cb.handshake_completed = handshake_completed_cb;
  cb.stream_open = stream_open_cb;
  cb.recv_stream_data = recv_stream_data_cb;
  cb.stream_close = stream_close_cb;

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = doq_now_ns();
  settings.handshake_timeout = s->handshake_timeout;
  settings.no_pmtud = 1;
  // Acknowledge every query packet at once, so the ACK rides in the answer written right after it.
  // With ngtcp2's default (2) a lone query's ACK waits for the delayed-ACK timer (smoothed RTT / 8),
  // which fires after the answer went, and a 41-byte ACK follows every answer by itself.
  settings.ack_thresh = 1;
  if (odcid) settings.token = hd->token;  // the client's address is validated (RFC 9000 §8.1.2)

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_remote = s->max_message + 1;
  params.initial_max_data = 1024 * 1024;
  params.initial_max_streams_bidi = 100;
  params.initial_max_streams_uni = 0;
  params.max_idle_timeout = s->idle_timeout;
  params.original_dcid = odcid ? *odcid : hd->dcid;
  if (odcid) {
    params.retry_scid = hd->dcid;
    params.retry_scid_present = 1;
  }

  ngtcp2_cid scid;
  scid.datalen = DOQS_SCID_LEN;
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &c->ps.path, hd->version, &cb, &settings, &params, NULL,
                             c) != 0) {
    gnutls_deinit(c->tls);
    free(c);
    return NULL;
  }
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
  c->cred = s->cred;  // kept while the session lives, whatever a reload does
  s->cred->refs++;
  c->next = s->conns;
  s->conns = c;
  s->stats.accepted++;
  s->stats.open++;
  return c;
}

/// Queues a Retry for the client Initial `hd` (no connection state is kept); 0, or -1 when dropped.
static int queue_retry(doqs_server *s, const ngtcp2_pkt_hd *hd, const struct sockaddr_storage *remote,
                       socklen_t remotelen, const char *ip, uint16_t port) {
  if (s->nretries >= DOQS_RETRY_QUEUE) {
    s->stats.dropped++;
    return -1;
  }
  ngtcp2_cid scid;
  scid.datalen = DOQS_SCID_LEN;
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
  dq_retry *r = &s->retries[s->nretries];
  ngtcp2_ssize tokenlen = -1, n = -1;
  if (gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen) == 0)
    tokenlen = ngtcp2_crypto_generate_retry_token(token, s->retry_secret, sizeof s->retry_secret, hd->version,
                                                  (const ngtcp2_sockaddr *)remote, remotelen, &scid, &hd->dcid,
                                                  doq_now_ns());
  if (tokenlen > 0)
    n = ngtcp2_crypto_write_retry(r->buf, sizeof r->buf, hd->version, &hd->scid, &scid, &hd->dcid, token,
                                  (size_t)tokenlen);
  if (n <= 0) {
    s->stats.dropped++;
    return -1;
  }
  r->len = (size_t)n;
  snprintf(r->ip, sizeof r->ip, "%s", ip);
  r->port = port;
  memcpy(r->tag, s->read_tag, s->read_taglen);
  r->taglen = s->read_taglen;
  s->nretries++;
  s->stats.retries++;
  return 0;
}

/// Queues a CONNECTION_CLOSE with INVALID_TOKEN for the client Initial `hd` whose Retry token
/// failed validation (no connection state is kept); -1: the datagram is dropped, as it is either way.
static int queue_invalid_token_close(doqs_server *s, const ngtcp2_pkt_hd *hd, const char *ip, uint16_t port) {
  s->stats.dropped++;  // `invalid_tokens` too once the close is queued
  if (s->nretries >= DOQS_RETRY_QUEUE) return -1;
  dq_retry *r = &s->retries[s->nretries];
  ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(r->buf, sizeof r->buf, hd->version, &hd->scid, &hd->dcid,
                                                         NGTCP2_INVALID_TOKEN, NULL, 0);
  if (n <= 0) return -1;
  r->len = (size_t)n;
  snprintf(r->ip, sizeof r->ip, "%s", ip);
  r->port = port;
  memcpy(r->tag, s->read_tag, s->read_taglen);
  r->taglen = s->read_taglen;
  s->nretries++;
  s->stats.invalid_tokens++;
  return -1;
}

int doqs_server_read(doqs_server *s, const char *remote_ip, uint16_t remote_port, const uint8_t *pkt, size_t len) {
  reap(s);
  ngtcp2_version_cid vc;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, pkt, len, DOQS_SCID_LEN);
  if (rv != 0) {
    s->stats.dropped++;
    return -1;
  }
  dq_conn *c = find_conn_by_dcid(s, vc.dcid, vc.dcidlen);
  if (!c) {
    ngtcp2_pkt_hd hd;
    struct sockaddr_storage remote;
    socklen_t remotelen = 0;
    if (ngtcp2_accept(&hd, pkt, len) != 0 || doq_fill_addr(&remote, &remotelen, remote_ip, remote_port)) {
      s->stats.dropped++;
      return -1;
    }
    ngtcp2_cid odcid;
    int validated = 0;
    if (hd.type == NGTCP2_PKT_INITIAL && hd.token.len && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
      if (ngtcp2_crypto_verify_retry_token(&odcid, hd.token.base, hd.token.len, s->retry_secret,
                                           sizeof s->retry_secret, hd.version, (const ngtcp2_sockaddr *)&remote,
                                           remotelen, &hd.dcid, DOQS_RETRY_TOKEN_TIMEOUT, doq_now_ns()) != 0) {
        // Forged, stale or from another address: the client will not take another Retry, so it
        // is told at once (RFC 9000 §8.1.2: SHOULD close with INVALID_TOKEN) rather than left to
        // time out. The close is smaller than the client's padded Initial: no amplification.
        return queue_invalid_token_close(s, &hd, remote_ip, remote_port);
      }
      validated = 1;
    }
    if (s->max_conns && s->stats.open >= s->max_conns) {
      s->stats.refused++;  // no Retry first: the client would come back to a full table
      s->stats.dropped++;
      return -1;
    }
    if (!validated && s->max_conns && s->stats.open * 2 >= s->max_conns) {
      // Half the connection table in use: a new client proves its address first (Retry, RFC 9000
      // §8.1.2), so spoofed Initials cannot hold slots until the handshake timeout.
      return queue_retry(s, &hd, &remote, remotelen, remote_ip, remote_port);
    }
    if (!(c = accept_conn(s, &hd, remote_ip, remote_port, validated ? &odcid : NULL))) {
      s->stats.dropped++;
      return -1;
    }
  }
  ngtcp2_pkt_info pi;
  memset(&pi, 0, sizeof pi);
  rv = ngtcp2_conn_read_pkt(c->conn, &c->ps.path, &pi, pkt, len, doq_now_ns());
  if (rv != 0) {
    fail_conn(c, rv);
    if (rv != NGTCP2_ERR_DRAINING) s->stats.dropped++;
    return rv == NGTCP2_ERR_DRAINING ? 0 : -1;
  }
  return 0;
}

static dq_stream *next_sendable(dq_conn *c) {
  for (dq_stream *st = c->streams; st; st = st->next)
    if (st->answered && !st->fin_sent && !st->blocked) return st;
  return NULL;
}

/// The next packet of one connection; 0 when it has nothing to send; negative on a fatal error.
static ngtcp2_ssize conn_write(dq_conn *c, uint8_t *buf, size_t cap) {
  uint64_t ts = doq_now_ns();
  for (dq_stream *st = c->streams; st; st = st->next) st->blocked = 0;
  for (;;) {
    dq_stream *st = next_sendable(c);
    ngtcp2_vec v;
    ngtcp2_ssize consumed = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (st) {
      v.base = st->out + st->sent;
      v.len = st->outlen - st->sent;
      flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(c->conn, &c->ps.path, &pi, buf, cap, &consumed, flags,
                                               st ? st->id : -1, st ? &v : NULL, st ? 1 : 0, ts);
    if (st && consumed >= 0) {
      st->sent += (size_t)consumed;
      if (st->sent == st->outlen) st->fin_sent = 1;
    }
    if (n == NGTCP2_ERR_WRITE_MORE) {
      if (st) continue;
      return 0;
    }
    if (st && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
               n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
      st->blocked = 1;
      if (n != NGTCP2_ERR_STREAM_DATA_BLOCKED) st->fin_sent = 1;
      continue;
    }
    if (n > 0) ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
    return n;
  }
}

static ssize_t server_write(doqs_server *s, uint8_t *buf, size_t cap, char *ip, size_t ipcap, uint16_t *port) {
  if (s->nretries) {
    dq_retry *r = &s->retries[--s->nretries];
    size_t n = r->len < cap ? r->len : cap;
    memcpy(buf, r->buf, n);
    snprintf(ip, ipcap, "%s", r->ip);
    *port = r->port;
    set_write_tag(s, r->tag, r->taglen);
    return (ssize_t)n;
  }
  for (dq_conn *c = s->conns; c; c = c->next) {
    if (c->closelen) {
      size_t n = c->closelen < cap ? c->closelen : cap;
      memcpy(buf, c->closebuf, n);
      c->closelen = 0;
      snprintf(ip, ipcap, "%s", c->remote_ip);
      *port = c->remote_port;
      set_write_tag(s, c->tag, c->taglen);
      return (ssize_t)n;
    }
    if (c->dead) continue;
    ngtcp2_ssize n = conn_write(c, buf, cap);
    if (n < 0) {
      fail_conn(c, (int)n);
      continue;
    }
    if (n > 0) {
      snprintf(ip, ipcap, "%s", c->remote_ip);
      *port = c->remote_port;
      set_write_tag(s, c->tag, c->taglen);
      return n;
    }
    if (c->closing && !c->streams) {
      // Every answer was sent and acknowledged (its stream closed): now the CONNECTION_CLOSE.
      // Closing earlier could overtake an answer held back by pacing.
      ngtcp2_connection_close_error ccerr;
      ngtcp2_connection_close_error_set_application_error(&ccerr, c->close_code, NULL, 0);
      ngtcp2_pkt_info pi;
      n = ngtcp2_conn_write_connection_close(c->conn, &c->ps.path, &pi, buf, cap, &ccerr, doq_now_ns());
      c->dead = 1;
      c->close_code = 0;
      if (n > 0) {
        snprintf(ip, ipcap, "%s", c->remote_ip);
        *port = c->remote_port;
        set_write_tag(s, c->tag, c->taglen);
        return n;
      }
    }
  }
  reap(s);
  return 0;
}

ssize_t doqs_server_write(doqs_server *s, uint8_t *buf, size_t cap, char *ip, size_t ipcap, uint16_t *port) {
  ssize_t n = server_write(s, buf, cap, ip, ipcap, port);
  if (n > 0) s->stats.sent++;
  return n;
}

int64_t doqs_server_expiry_delay(doqs_server *s) {
  uint64_t now = doq_now_ns();
  int64_t best = -1;
  for (dq_conn *c = s->conns; c; c = c->next) {
    if (c->dead) continue;
    ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(c->conn);
    if (expiry == UINT64_MAX) continue;
    int64_t d = expiry > now ? (int64_t)(expiry - now) : 0;
    if (best < 0 || d < best) best = d;
  }
  return best;
}

void doqs_server_handle_expiry(doqs_server *s) {
  uint64_t now = doq_now_ns();
  for (dq_conn *c = s->conns; c; c = c->next) {
    if (c->dead) continue;
    if (ngtcp2_conn_get_expiry(c->conn) > now) continue;
    int rv = ngtcp2_conn_handle_expiry(c->conn, now);
    if (rv != 0) fail_conn(c, rv);
  }
  reap(s);
}

int doqs_server_answer(doqs_server *s, uint64_t conn, int64_t sid, const uint8_t *data, size_t len) {
  dq_conn *c = find_conn_by_id(s, conn);
  dq_stream *st = c ? find_stream(c, sid) : NULL;
  if (!st || st->answered || len > 65535) return -1;
  st->out = malloc(len + 2);
  if (!st->out) return -1;
  st->out[0] = (uint8_t)(len >> 8);
  st->out[1] = (uint8_t)len;
  memcpy(st->out + 2, data, len);
  st->outlen = len + 2;
  st->answered = 1;
  return 0;
}

int doqs_server_reset(doqs_server *s, uint64_t conn, int64_t sid, uint64_t code) {
  dq_conn *c = find_conn_by_id(s, conn);
  if (!c) return -1;
  s->stats.resets++;
  return ngtcp2_conn_shutdown_stream(c->conn, sid, code) == 0 ? 0 : -1;
}

int doqs_server_close(doqs_server *s, uint64_t conn, uint64_t code) {
  dq_conn *c = find_conn_by_id(s, conn);
  if (!c) return -1;
  // What is queued (answers) is sent first, then the close (doqs_server_write).
  c->closing = 1;
  c->close_code = code;
  return 0;
}

int doqs_server_abort(doqs_server *s, uint64_t conn, uint64_t code) {
  dq_conn *c = find_conn_by_id(s, conn);
  if (!c) return -1;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_set_application_error(&ccerr, code, NULL, 0);
  queue_close(c, &ccerr);
  c->close_code = code;
  return 0;
}

void doqs_server_close_all(doqs_server *s) {
  for (dq_conn *c = s->conns; c; c = c->next)
    if (!c->dead) (void)doqs_server_abort(s, c->id, 0);
}

void doqs_server_stats(doqs_server *s, doqs_stats *out) { *out = s->stats; }

void doqs_server_set_limits(doqs_server *s, uint64_t max_connections, size_t max_message) {
  s->max_conns = max_connections;
  s->max_message = (max_message && max_message <= 65535 ? max_message : 65535) + 2;
}

int doqs_server_remote(doqs_server *s, uint64_t conn, char *ip, size_t ipcap, uint16_t *port) {
  dq_conn *c = find_conn_by_id(s, conn);
  if (!c) return -1;
  snprintf(ip, ipcap, "%s", c->remote_ip);
  *port = c->remote_port;
  return 0;
}

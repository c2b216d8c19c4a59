#ifndef SOTTO_DOQ_ENGINE_H
#define SOTTO_DOQ_ENGINE_H

// A sans-I/O QUIC v1 client for DNS over QUIC (RFC 9250) on ngtcp2 0.12 + GnuTLS. The caller moves
// datagrams and drives timers; the engine reports what happened through a polled event queue, so no
// callback ever crosses into Swift. Not thread-safe: one engine is used from one thread at a time.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Shared TLS settings: certificate credentials (a server's certificate is verified against each
/// engine's `verify_store`, an OpenSSL X509_STORE).
typedef struct doq_context doq_context;
/// One QUIC connection.
typedef struct doq_engine doq_engine;

/// Creates the shared context; returns NULL and writes a message into `err` on failure.
doq_context *doq_context_new(char *err, size_t errlen);
/// Frees the context (after every engine made with it).
void doq_context_free(doq_context *ctx);

typedef struct doq_config {
  const char *remote_ip;
  uint16_t remote_port;
  const char *local_ip;
  uint16_t local_port;
  /// Name the certificate is checked against (informational); NULL = check against remote_ip.
  const char *expected_name;
  uint64_t handshake_timeout_ns;
  uint64_t idle_timeout_ns;
  /// A blob from a DOQ_EVENT_TICKET of an earlier connection, or NULL.
  const uint8_t *resumption;
  size_t resumption_len;
  /// Nonzero to allow 0-RTT when resuming (only if the ticket allows early data).
  int enable_early_data;
  /// The OpenSSL X509_STORE the server's certificate is verified against (the engine takes a
  /// reference of its own), or NULL: the verdict is then "other" (OE-26: only reported).
  void *verify_store;
  /// OpenSSL's security level for that verification (DoT's, SSL_CTX_get_security_level); 0: none.
  int verify_auth_level;
} doq_config;

/// Creates a client connection (nothing is sent until `doq_engine_write`). NULL + message on failure.
doq_engine *doq_engine_new(doq_context *ctx, const doq_config *cfg, char *err, size_t errlen);
/// Frees the connection and everything it owns (streams, events, TLS session).
void doq_engine_free(doq_engine *e);

enum {
  DOQ_EVENT_HANDSHAKE_COMPLETED = 1,
  DOQ_EVENT_HANDSHAKE_CONFIRMED = 2,
  /// A stream finished with FIN: `data`/`len` hold every byte the server sent on it.
  DOQ_EVENT_STREAM_FIN = 3,
  /// The server reset the stream (RESET_STREAM); `code` is its application error.
  DOQ_EVENT_STREAM_RESET = 4,
  /// The stream closed without a FIN or reset seen (e.g. connection teardown); `code` if set.
  DOQ_EVENT_STREAM_CLOSED = 5,
  /// A resumption blob (TLS session + server transport parameters + certificate verdict).
  DOQ_EVENT_TICKET = 6,
  /// More bidirectional streams may be opened.
  DOQ_EVENT_STREAMS_AVAILABLE = 7,
  /// The server rejected 0-RTT; streams opened before the handshake were discarded.
  DOQ_EVENT_EARLY_DATA_REJECTED = 8,
  /// A response exceeded 65537 octets; the stream was abandoned.
  DOQ_EVENT_STREAM_OVERFLOW = 9,
};

typedef struct doq_event {
  int type;
  int64_t stream_id;
  uint64_t code;
  /// Valid until the next call into the engine.
  const uint8_t *data;
  size_t len;
} doq_event;

/// Pops the next event into `ev`; returns 0 when the queue is empty.
int doq_engine_next_event(doq_engine *e, doq_event *ev);

/// Feeds one received datagram. Returns 0 or a negative ngtcp2 error (NGTCP2_ERR_DRAINING when the
/// peer closed: read `doq_engine_peer_close`).
int doq_engine_read(doq_engine *e, const uint8_t *pkt, size_t len);
/// Writes the next packet into `buf`; returns its size, 0 when nothing is left or writes are held for
/// an ACK to ride on the next query (then `doq_engine_expiry_delay` covers the end of the hold), or a
/// negative error.
ssize_t doq_engine_write(doq_engine *e, uint8_t *buf, size_t cap);
/// Nanoseconds until `doq_engine_handle_expiry` is due; -1 when no timer is armed.
int64_t doq_engine_expiry_delay(doq_engine *e);
/// Runs due timers; returns 0 or a negative ngtcp2 error (NGTCP2_ERR_HANDSHAKE_TIMEOUT, NGTCP2_ERR_IDLE_CLOSE).
int doq_engine_handle_expiry(doq_engine *e);
/// Opens a bidirectional stream sending `data` then FIN (data is copied). Returns the stream ID or a
/// negative ngtcp2 error (NGTCP2_ERR_STREAM_ID_BLOCKED: wait for DOQ_EVENT_STREAMS_AVAILABLE).
int64_t doq_engine_submit(doq_engine *e, const uint8_t *data, size_t len);
/// Abandons a stream (STOP_SENDING + RESET_STREAM with `code`), e.g. DOQ_REQUEST_CANCELLED on timeout.
void doq_engine_cancel(doq_engine *e, int64_t stream_id, uint64_t code);
/// Streams cancelled at least `older_than_ns` (or three PTOs, if longer) ago that are still open:
/// the server has neither answered nor reset them, though STOP_SENDING asked it to (RFC 9000
/// §3.5; "dangling", T-39).
size_t doq_engine_dangling(doq_engine *e, uint64_t older_than_ns);
/// Writes a CONNECTION_CLOSE packet: application error `app_code` when `liberr` is 0, otherwise a
/// transport error inferred from the ngtcp2 error `liberr`. Returns its size, 0 or a negative error.
ssize_t doq_engine_write_close(doq_engine *e, uint64_t app_code, int liberr, uint8_t *buf, size_t cap);

/// The peer's CONNECTION_CLOSE: `*is_app` 1 for an application error, 2 for an idle close, 0 transport.
void doq_engine_peer_close(doq_engine *e, int *is_app, uint64_t *code);
int doq_engine_handshake_completed(doq_engine *e);
int doq_engine_handshake_confirmed(doq_engine *e);
int doq_engine_resumed(doq_engine *e);
/// The idle timeout both ends agreed on (the smaller non-zero max_idle_timeout of the two), in
/// nanoseconds; 0 when neither set one. Before the server's parameters arrive, ours (T-32).
uint64_t doq_engine_idle_timeout(doq_engine *e);
/// 1 when 0-RTT data was sent and accepted, 0 when sent and rejected, -1 when none was sent.
int doq_engine_early_data_state(doq_engine *e);
/// Number of datagrams read that ngtcp2 could not use before the handshake completed.
uint64_t doq_engine_unusable_datagrams(doq_engine *e);
/// Writes the negotiated ALPN (NUL-terminated) into `buf`; returns its length, or -1 if none.
int doq_engine_alpn(doq_engine *e, char *buf, size_t cap);
/// Writes the TLS version name, e.g. "TLS1.3".
void doq_engine_tls_version(doq_engine *e, char *buf, size_t cap);
/// The TLS alert that ended the handshake (0 if none).
uint8_t doq_engine_tls_alert(doq_engine *e);

enum {
  DOQ_CERT_EXPIRED = 1 << 0,
  DOQ_CERT_NOT_YET_VALID = 1 << 1,
  DOQ_CERT_SELF_SIGNED = 1 << 2,
  DOQ_CERT_UNTRUSTED_ISSUER = 1 << 3,
  DOQ_CERT_WRONG_NAME = 1 << 4,
  DOQ_CERT_NONE = 1 << 5,
  DOQ_CERT_OTHER = 1 << 6,
};
/// With DOQ_CERT_OTHER from OpenSSL's verification, its X509_V_ERR_* code sits in the upper 16
/// bits (0 when there is none), so DoQ's "other" reads as DoT's, in resumption blobs as well.
#define DOQ_CERT_OTHER_CODE_SHIFT 16

/// The certificate verdict (DOQ_CERT_* bits, 0 = valid), the leaf's subject DN and notAfter (Unix
/// time, -1 unknown). A resumed connection reports the verdict stored in its resumption blob.
unsigned doq_engine_cert_problems(doq_engine *e);
void doq_engine_cert_subject(doq_engine *e, char *buf, size_t cap);
int64_t doq_engine_cert_not_after(doq_engine *e);

/// ngtcp2's text for an error code.
const char *doq_strerror(int liberr);

#ifdef __cplusplus
}
#endif

#endif

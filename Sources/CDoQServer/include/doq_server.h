#ifndef SOTTO_DOQ_SERVER_H
#define SOTTO_DOQ_SERVER_H

// A sans-I/O QUIC v1 server for DNS over QUIC (RFC 9250) on ngtcp2 0.12 + GnuTLS: the resolver's
// DoQ listener for its clients, and Sotto's demo and in-process tests. The caller moves datagrams and drives timers; queries come out of a polled
// event queue and answers go back by connection and stream. Not thread-safe: one event loop.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct doqs_server doqs_server;

/// A server with the PEM certificate chain and key; NULL + message in `err` on failure.
doqs_server *doqs_server_new(const char *cert_pem, const char *key_pem, const char *local_ip, uint16_t local_port,
                             uint64_t handshake_timeout_ns, uint64_t idle_timeout_ns, char *err, size_t errlen);
/// Frees every connection and the server.
void doqs_server_free(doqs_server *s);
/// Gives connections that start from now on a new PEM certificate chain and key (a renewed
/// certificate); open connections keep theirs. Returns 0, or -1 + message in `err` (the old
/// identity stays).
int doqs_server_set_identity(doqs_server *s, const char *cert_pem, const char *key_pem, char *err, size_t errlen);

enum {
  /// A complete query on a stream: `data`/`len` is the DNS message (without the length prefix).
  DOQS_EVENT_QUERY = 1,
  DOQS_EVENT_HANDSHAKE_COMPLETED = 2,
  /// A connection ended and was freed (`code`: 0 clean/idle, else an error).
  DOQS_EVENT_CONNECTION_CLOSED = 3,
};

typedef struct doqs_event {
  int type;
  uint64_t conn;
  int64_t stream_id;
  uint64_t code;
  /// Valid until the next call into the server.
  const uint8_t *data;
  size_t len;
} doqs_event;

/// Pops the next event; 0 when there is none.
int doqs_server_next_event(doqs_server *s, doqs_event *ev);

/// Feeds one datagram from remote_ip:remote_port. Returns 0, or -1 when it was dropped (not QUIC,
/// unknown connection, refused version).
int doqs_server_read(doqs_server *s, const char *remote_ip, uint16_t remote_port, const uint8_t *pkt, size_t len);
/// Writes the next datagram to send into `buf` and its destination into ip/port; returns its size,
/// 0 when nothing is left.
ssize_t doqs_server_write(doqs_server *s, uint8_t *buf, size_t cap, char *ip, size_t ipcap, uint16_t *port);

/// Longest tag `doqs_server_set_read_tag` keeps.
#define DOQS_TAG_MAX 32
/// An opaque tag for the datagrams `doqs_server_read` is given from now on (a wildcard socket's
/// local address they were sent to). A new connection keeps the tag of the datagram that opened
/// it for good, a Retry or INVALID_TOKEN close that of the Initial it answers, so a later datagram
/// (spoofed or not) never moves where a connection's answers come from.
void doqs_server_set_read_tag(doqs_server *s, const void *tag, size_t len);
/// Copies the tag of the datagram `doqs_server_write` wrote last into `out` (at most `cap`
/// octets) and returns its length (0: none).
size_t doqs_server_write_tag(const doqs_server *s, void *out, size_t cap);
/// Nanoseconds until `doqs_server_handle_expiry` is due; -1 when no timer is armed.
int64_t doqs_server_expiry_delay(doqs_server *s);
/// Runs due timers; connections that timed out are freed (DOQS_EVENT_CONNECTION_CLOSED).
void doqs_server_handle_expiry(doqs_server *s);

/// Sends `data` (a DNS message) as the answer on stream `sid` of connection `conn`, then FIN.
/// Returns 0, or -1 when the connection or stream is gone.
int doqs_server_answer(doqs_server *s, uint64_t conn, int64_t sid, const uint8_t *data, size_t len);
/// Resets stream `sid` (RESET_STREAM + STOP_SENDING) with application error `code`.
int doqs_server_reset(doqs_server *s, uint64_t conn, int64_t sid, uint64_t code);
/// Closes connection `conn` with application error `code` (CONNECTION_CLOSE is sent by the next write).
int doqs_server_close(doqs_server *s, uint64_t conn, uint64_t code);
/// Closes connection `conn` at once with application error `code` (the CONNECTION_CLOSE goes out
/// with the next write; answers not yet sent are dropped). -1 when the connection is gone.
int doqs_server_abort(doqs_server *s, uint64_t conn, uint64_t code);
/// Closes every connection at once (`doqs_server_abort`, DOQ_NO_ERROR): a server shutting down.
void doqs_server_close_all(doqs_server *s);

typedef struct doqs_stats {
  uint64_t accepted, handshakes, queries, resets, dropped, open;
  /// Datagrams of new clients dropped because `doqs_server_set_limits`' connections were open (also
  /// in `dropped`; a client's retransmitted Initial counts again).
  uint64_t refused;
  /// Streams reset with DOQ_PROTOCOL_ERROR because their message was malformed (no or a wrong
  /// length prefix, too long).
  uint64_t malformed;
  /// Retry packets sent to new clients (half the connection table in use: address validation).
  uint64_t retries;
  /// Client Initials with a forged, stale or misdirected Retry token, answered with a
  /// CONNECTION_CLOSE carrying INVALID_TOKEN (RFC 9000 §8.1.2; also in `dropped`).
  uint64_t invalid_tokens;
  /// Datagrams handed out by doqs_server_write.
  uint64_t sent;
} doqs_stats;

void doqs_server_stats(doqs_server *s, doqs_stats *out);

/// Open connections at most: an Initial from a new client beyond it is dropped (0, the default: no
/// limit), and from half of it on a new client is sent a Retry and let in only with a valid token
/// (RFC 9000 §8.1.2: a spoofed address cannot hold a slot); and the longest DNS message a stream may carry (0, the default: 65535). A longer one gets
/// its stream reset with DOQ_PROTOCOL_ERROR (`malformed`).
void doqs_server_set_limits(doqs_server *s, uint64_t max_connections, size_t max_message);
/// The client address of connection `conn` into ip/port; -1 when the connection is gone.
int doqs_server_remote(doqs_server *s, uint64_t conn, char *ip, size_t ipcap, uint16_t *port);

/// A non-blocking UDP socket bound to ip:port; -1 + message in `err` on failure. With
/// `steer_reuseport` it is bound with SO_REUSEPORT and a BPF program that sends every datagram to
/// the group's first socket (this one, when bound first): another server may bind the same port
/// later (NSD's plain-DNS socket next to its DoT) without taking any of the QUIC datagrams.
int doqs_bind_udp(const char *ip, uint16_t port, int steer_reuseport, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif

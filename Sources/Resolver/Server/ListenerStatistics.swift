import Foundation
import Logging
import Synchronization

/// Counters of the client listener (also in `sotto ctl stats` under `listener`).
public struct ListenerStatistics: Sendable, Hashable, Codable {
  /// Messages received from clients (UDP datagrams and TCP frames).
  public var queries = 0
  /// Of those, over TCP.
  public var tcpQueries = 0
  /// Responses with REFUSED (access control, class, zone transfer).
  public var refused = 0
  /// Of the refusals, clients outside the allowed networks.
  public var notAllowed = 0
  /// Responses with FORMERR.
  public var formErrors = 0
  /// Messages answered with nothing (responses, runts, unparsable from disallowed clients).
  public var dropped = 0
  /// TCP connections closed at once because `maxTCPConnections` were open.
  public var tcpConnectionsRejected = 0
  /// TCP and DoT connections closed at once (also in `tcpConnectionsRejected`) and DoQ connections
  /// closed after their handshake (DOQ_EXCESSIVE_LOAD) because their client (`ClientKey`) held
  /// `maxConnectionsPerClient` connections already.
  public var clientConnectionCapClosed = 0
  /// TCP connections closed after `tcpIdleTimeout` without a query.
  public var tcpIdleClosed = 0
  /// TCP connections closed after `tcpQueriesPerConnection` queries.
  public var tcpQueryLimitClosed = 0
  /// Times a TCP or DoT connection stopped being read because its unsent answers were over the
  /// high-water mark (a client that does not read its answers).
  public var tcpReadsPaused = 0
  /// DoQ connections closed after `tcpQueriesPerConnection` queries (the same limit).
  public var quicQueryLimitClosed = 0
  /// Queries dropped because their client (`ClientKey`) was over `clientRateLimit`.
  public var rateLimited = 0
  /// Queries answered SERVFAIL because `maxResolutions` resolutions were already running.
  public var resolutionsShed = 0
  /// Client resolutions running now (`ListenerCounters` keeps it in an atomic and fills it in
  /// its snapshot).
  public var resolutionsInFlight = 0
  /// ANY queries answered with the RFC 8482 HINFO.
  public var anyQueries = 0
  /// UDP responses the kernel did not take (send buffer full, client unreachable): not sent.
  public var sendFailures = 0
  /// UDP queries answered SERVFAIL by the listener because their resolution was still running a
  /// second past the resolution deadline (`ResolutionWatch`). Every resolution should end by the
  /// deadline, so anything but 0 is a bug; the resolution's own answer, if it comes, is dropped.
  public var resolutionsOverdue = 0
  /// TLS handshakes completed with clients of the DoT listener (`--listen-tls`).
  public var tlsHandshakes = 0
  /// DoT client connections that ended before their handshake completed: a TLS failure, cleartext
  /// DNS sent to the TLS port, or a client that left or stayed silent until the idle timeout.
  public var tlsHandshakeFailures = 0
  /// DoT client connections closed on a TLS error after the handshake (a bad record).
  public var tlsErrors = 0
  /// Of `tcpQueries`, those that came over DoT.
  public var tlsQueries = 0
  /// QUIC handshakes completed with clients of the DoQ listener (`--listen-quic`).
  public var quicHandshakes = 0
  /// Of `queries`, those that came over DoQ (not in `tcpQueries`).
  public var quicQueries = 0
  /// Datagrams of new DoQ clients dropped because `maxTCPConnections` DoQ connections were open (a
  /// client's retransmitted Initial counts again).
  public var quicConnectionsRejected = 0
  /// Retry packets the DoQ listener sent: from half of `maxTCPConnections` connections on, a new
  /// client proves its address before it gets a slot (RFC 9000 §8.1.2).
  public var quicRetries = 0
  /// New DoQ clients whose Retry token was forged, stale (over 10 s) or made for another address:
  /// answered with a CONNECTION_CLOSE carrying INVALID_TOKEN (RFC 9000 §8.1.2), given no slot.
  public var quicInvalidTokens = 0
  /// DoQ queries refused (stream reset, DOQ_EXCESSIVE_LOAD) because their connection already had
  /// `ListenerConfiguration.maxDoQUnanswered` queries unanswered.
  public var quicExcessiveLoad = 0
  /// Datagrams the DoQ listener dropped: not QUIC, for no known connection, failing decryption,
  /// or beyond the Retry queue.
  public var quicDatagramsDropped = 0
  /// DoQ connections closed with DOQ_PROTOCOL_ERROR (RFC 9250 §4.2.1: a query with a Message ID
  /// other than 0, or with an EDNS TCP keepalive option) and streams reset for a malformed message.
  public var quicProtocolErrors = 0
  public init() {}

  enum CodingKeys: String, CodingKey {
    case queries, tcpQueries, refused, notAllowed, formErrors, dropped, tcpConnectionsRejected, tcpIdleClosed
    case tcpQueryLimitClosed, rateLimited, resolutionsShed, resolutionsInFlight, anyQueries, sendFailures
    case resolutionsOverdue, tlsHandshakes, tlsHandshakeFailures, tlsErrors, tlsQueries
    case quicHandshakes, quicQueries, quicConnectionsRejected, quicRetries, quicExcessiveLoad, quicDatagramsDropped
    case quicProtocolErrors, quicInvalidTokens, quicQueryLimitClosed, tcpReadsPaused, clientConnectionCapClosed
  }

  /// Decodes a snapshot; counters a `sotto` of another version did not send read as 0.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    queries = try c.counter(.queries)
    tcpQueries = try c.counter(.tcpQueries)
    refused = try c.counter(.refused)
    notAllowed = try c.counter(.notAllowed)
    formErrors = try c.counter(.formErrors)
    dropped = try c.counter(.dropped)
    tcpConnectionsRejected = try c.counter(.tcpConnectionsRejected)
    clientConnectionCapClosed = try c.counter(.clientConnectionCapClosed)
    tcpIdleClosed = try c.counter(.tcpIdleClosed)
    tcpQueryLimitClosed = try c.counter(.tcpQueryLimitClosed)
    tcpReadsPaused = try c.counter(.tcpReadsPaused)
    rateLimited = try c.counter(.rateLimited)
    resolutionsShed = try c.counter(.resolutionsShed)
    resolutionsInFlight = try c.counter(.resolutionsInFlight)
    anyQueries = try c.counter(.anyQueries)
    sendFailures = try c.counter(.sendFailures)
    resolutionsOverdue = try c.counter(.resolutionsOverdue)
    tlsHandshakes = try c.counter(.tlsHandshakes)
    tlsHandshakeFailures = try c.counter(.tlsHandshakeFailures)
    tlsErrors = try c.counter(.tlsErrors)
    tlsQueries = try c.counter(.tlsQueries)
    quicHandshakes = try c.counter(.quicHandshakes)
    quicQueries = try c.counter(.quicQueries)
    quicConnectionsRejected = try c.counter(.quicConnectionsRejected)
    quicRetries = try c.counter(.quicRetries)
    quicExcessiveLoad = try c.counter(.quicExcessiveLoad)
    quicDatagramsDropped = try c.counter(.quicDatagramsDropped)
    quicProtocolErrors = try c.counter(.quicProtocolErrors)
    quicInvalidTokens = try c.counter(.quicInvalidTokens)
    quicQueryLimitClosed = try c.counter(.quicQueryLimitClosed)
  }
}

/// `ListenerStatistics` shared by the listener's handlers (and the monitor). The counters every
/// query moves (queries, TCP queries, resolution slots) are relaxed atomics; the rest, which count
/// refusals and closes, are behind a lock. A snapshot reads them one after another, not at one
/// instant.
public final class ListenerCounters: Sendable {
  private let counters = StateLock(ListenerStatistics())
  // The counters every query moves are atomics, so a query that is resolved takes no lock for
  // them (it took three: the query, the slot, the slot given back).
  private let queryCount = Atomic<Int>(0)
  private let tcpQueryCount = Atomic<Int>(0)
  private let inFlight = Atomic<Int>(0)
  private let joiners = Atomic<Int>(0)
  /// The errnos of refused UDP responses logged so far (each is logged once).
  private let loggedSendErrors = StateLock(Set<Int32>())

  public init() {}

  /// The counters now.
  public var snapshot: ListenerStatistics {
    var s = counters.withLock { $0 }
    // TCP queries first: both only grow, so the snapshot never shows more TCP queries than queries.
    s.tcpQueries += tcpQueryCount.load(ordering: .relaxed)
    s.queries += queryCount.load(ordering: .relaxed)
    s.resolutionsInFlight = inFlight.load(ordering: .relaxed)
    return s
  }

  /// Counts one query answered on the fast path (`queries`).
  func countFastQuery() { queryCount.add(1, ordering: .relaxed) }

  /// Counts one client message (`queries`; `tcpQueries` over TCP and DoT, `quicQueries` over DoQ).
  func countQuery(via transport: ClientTransport) {
    queryCount.add(1, ordering: .relaxed)
    switch transport {
    case .udp: break
    case .tcp: tcpQueryCount.add(1, ordering: .relaxed)
    case .tls:
      tcpQueryCount.add(1, ordering: .relaxed)
      counters.withLock { $0.tlsQueries += 1 }
    case .quic: counters.withLock { $0.quicQueries += 1 }
    }
  }

  func update(_ body: (inout ListenerStatistics) -> Void) {
    counters.withLock { body(&$0) }
  }

  /// Takes a resolution slot unless `limit` are running; counts a refusal as shed.
  func beginResolution(limit: Int) -> Bool {
    var running = inFlight.load(ordering: .relaxed)
    while running < limit {
      let (exchanged, found) = inFlight.compareExchange(
        expected: running, desired: running + 1, ordering: .relaxed)
      if exchanged { return true }
      running = found
    }
    counters.withLock { $0.resolutionsShed += 1 }
    return false
  }

  /// Gives back a slot taken by `beginResolution`.
  func endResolution() { inFlight.subtract(1, ordering: .relaxed) }

  /// Counts a query that joins an identical question's resolution already running, unless
  /// `limit` are waiting so (each holds its client's state until that resolution ends).
  func beginJoin(limit: Int) -> Bool {
    let waiting = joiners.add(1, ordering: .relaxed).newValue
    if waiting <= limit { return true }
    joiners.subtract(1, ordering: .relaxed)
    return false
  }

  /// Ends a wait counted by `beginJoin`.
  func endJoin() { joiners.subtract(1, ordering: .relaxed) }

  /// Counts one UDP response the kernel refused with `code` and logs the first of each errno
  /// (the count goes on in `sendFailures`).
  func noteSendFailure(_ code: Int32, logger: Logger) {
    counters.withLock { $0.sendFailures += 1 }
    let first = loggedSendErrors.withLock { $0.insert(code).inserted }
    if first {
      logger.warning(
        "UDP response to a client not sent: \(String(cString: strerror(code))) (counted in sendFailures; logged once)")
    }
  }
}

import CDoQServer
import NIOCore

/// Answers the DoQ listener's client queries (RFC 9250; RFC 9539 §4.4, OE-4): one query per
/// stream, resolved concurrently and answered on its stream as it completes. Runs on the DoQ
/// channel's event loop, fed by its `DoQServerDriver`.
/// - A query with a Message ID other than 0, or with an EDNS TCP keepalive option, closes its
///   connection with DOQ_PROTOCOL_ERROR (RFC 9250 §4.2.1, §5.5.2), counted in `quicProtocolErrors`.
/// - A client over the per-address rate limit, or with too many queries unanswered on its
///   connection already (`ListenerConfiguration.maxDoQUnanswered`), gets its stream reset
///   (DOQ_EXCESSIVE_LOAD; counted in `rateLimited` and `quicExcessiveLoad`); a message the
///   listener would drop unanswered (a response, say) gets DOQ_PROTOCOL_ERROR.
/// - A connection that has sent `tcpQueriesPerConnection` queries is closed with DOQ_NO_ERROR
///   once they are answered (later streams are cancelled, DOQ_REQUEST_CANCELLED), counted in
///   `quicQueryLimitClosed`: the same limit as on TCP and DoT.
/// - The overdue-answer watch covers DoQ as it covers TCP (`AnswerWatch`); a connection that
///   closes takes its queries' timers with it.
final class DoQQueryService {
  private let processor: QueryProcessor
  private let counters: ListenerCounters
  private var watch: AnswerWatch
  /// Queries a connection may send before it is closed (0: no limit).
  private let queryLimit: Int
  /// Queries each connection has sent, while a limit applies.
  private var received: [UInt64: Int] = [:]
  /// The watch tokens of every connection's unanswered queries.
  private var unanswered: [UInt64: Set<UInt64>] = [:]
  /// Queries answered SERVFAIL as overdue whose resolution has not ended yet.
  private var answeredOverdue: Set<UInt64> = []
  /// The engine's counters when last copied into `counters`.
  private var copied = doqs_stats()
  /// Connections per client (`ClientKey`), shared with TCP and DoT; a DoQ connection is counted once
  /// its handshake has proven its address (a spoofed Initial cannot use up another's share).
  private let perClient: ClientConnectionCap
  /// The addresses of the connections counted in `perClient`.
  private var counted: [UInt64: SocketAddress] = [:]

  init(
    processor: QueryProcessor, counters: ListenerCounters, answerDeadline: TimeAmount?, queryLimit: Int = 0,
    perClient: ClientConnectionCap = ClientConnectionCap(limit: 0)
  ) {
    self.perClient = perClient
    self.processor = processor
    self.counters = counters
    self.watch = AnswerWatch(deadline: answerDeadline)
    self.queryLimit = queryLimit
  }

  func handle(_ event: DoQServerEvent, _ driver: DoQServerDriver) {
    switch event {
    case .query(let connection, let stream, let message):
      query(message, connection: connection, stream: stream, driver: driver)
    case .handshakeCompleted(let connection):
      counters.update { $0.quicHandshakes += 1 }
      let client = driver.remote(of: connection)
      guard perClient.take(client) else {
        counters.update { $0.clientConnectionCapClosed += 1 }
        processor.logger.debug(
          "connection limit per client reached (DoQ)", metadata: ["client": "\(client.map { "\($0)" } ?? "?")"])
        return driver.abort(connection: connection, code: DoQErrorCode.excessiveLoad)
      }
      if let client { counted[connection] = client }
    case .connectionClosed(let connection, _):
      if let client = counted.removeValue(forKey: connection) { perClient.release(client) }
      // Answers still running find their connection gone and are dropped; their timers go now.
      for token in unanswered.removeValue(forKey: connection) ?? [] { _ = watch.finish(token) }
      received[connection] = nil
    }
  }

  private func query(_ raw: [UInt8], connection: UInt64, stream: Int64, driver: DoQServerDriver) {
    let client = driver.remote(of: connection)
    guard processor.admit(client) else {
      return driver.reset(connection: connection, stream: stream, code: DoQErrorCode.excessiveLoad)
    }
    if Self.breaksDoQ(raw) {
      counters.update { $0.quicProtocolErrors += 1 }
      processor.logger.debug(
        "DoQ query with a Message ID other than 0 or a TCP keepalive option: connection closed",
        metadata: ["client": "\(client.map { "\($0)" } ?? "?")"])
      return driver.abort(connection: connection, code: DoQErrorCode.protocolError)
    }
    guard unanswered[connection, default: []].count < ListenerConfiguration.maxDoQUnanswered else {
      counters.update { $0.quicExcessiveLoad += 1 }
      return driver.reset(connection: connection, stream: stream, code: DoQErrorCode.excessiveLoad)
    }
    if queryLimit > 0 {
      let count = received[connection, default: 0] + 1
      received[connection] = count
      if count == queryLimit {
        // Answered first, then closed (the engine cancels any stream the client opens meanwhile).
        counters.update { $0.quicQueryLimitClosed += 1 }
        driver.close(connection: connection, code: DoQErrorCode.noError)
      }
    }
    guard let loop = driver.eventLoop else { return }
    let bound = NIOLoopBound((service: self, driver: driver), eventLoop: loop)
    let token = watch.begin(on: loop) { token, began in
      bound.value.service.overdue(token, raw, began: began, connection: connection, stream: stream, bound.value.driver)
    }
    unanswered[connection, default: []].insert(token)
    let promise = loop.makePromise(of: [UInt8]?.self)
    let processor = self.processor
    // On the upstream engine's thread, as UDPSocketLoop's full path (see UDPExchangeEngine).
    UDPExchangeEngine.resolutions.run {
      await processor.process(raw, from: client, via: .quic) { response, _ in promise.succeed(response) }
    }
    promise.futureResult.whenSuccess { response in  // on the channel's event loop
      let (service, driver) = bound.value
      if service.answeredOverdue.remove(token) != nil {
        return service.processor.noteLateEnd(from: client.map { "\($0)" } ?? "?")
      }
      // Not there: the connection closed meanwhile.
      guard service.unanswered[connection]?.remove(token) != nil, service.watch.finish(token) else { return }
      service.answer(response, connection: connection, stream: stream, driver)
    }
  }

  private func overdue(
    _ token: UInt64, _ raw: [UInt8], began: NIODeadline, connection: UInt64, stream: Int64, _ driver: DoQServerDriver
  ) {
    // A connection gone (aborted: its close event comes with the next send) needs no answer.
    guard let client = driver.remote(of: connection).map({ "\($0)" }) else { return }
    guard watch.isWaiting(token),
      let servfail = processor.overdueAnswer(
        to: raw, from: client, waitedMs: AnswerWatch.waitedMs(since: began), via: .quic)
    else { return }
    watch.expire(token)
    unanswered[connection]?.remove(token)
    answeredOverdue.insert(token)
    answer(servfail, connection: connection, stream: stream, driver)
  }

  private func answer(_ response: [UInt8]?, connection: UInt64, stream: Int64, _ driver: DoQServerDriver) {
    if let response {
      driver.answer(connection: connection, stream: stream, response)  // false: the client left
    } else {
      driver.reset(connection: connection, stream: stream, code: DoQErrorCode.protocolError)
    }
    driver.send()
  }

  /// Adds what the engine counted since the last copy to the listener's counters (the driver's
  /// `afterSend`).
  func copyEngineCounters(_ driver: DoQServerDriver) {
    let now = driver.statistics
    let refused = Int(now.refused &- copied.refused)
    let invalidTokens = Int(now.invalid_tokens &- copied.invalid_tokens)
    let dropped = Int(now.dropped &- copied.dropped) - refused - invalidTokens
    let malformed = Int(now.malformed &- copied.malformed)
    let retries = Int(now.retries &- copied.retries)
    copied = now
    guard refused != 0 || dropped != 0 || malformed != 0 || retries != 0 || invalidTokens != 0 else { return }
    counters.update {
      $0.quicRetries += retries
      $0.quicInvalidTokens += invalidTokens
      $0.quicConnectionsRejected += refused
      $0.quicDatagramsDropped += dropped
      $0.quicProtocolErrors += malformed
    }
  }

  /// RFC 9250 §4.2.1: a DoQ query's Message ID is 0; §5.5.2: it carries no EDNS TCP keepalive option.
  static func breaksDoQ(_ raw: [UInt8]) -> Bool {
    guard raw.count >= 2 else { return false }  // left to the processor (FORMERR or drop)
    if raw[0] != 0 || raw[1] != 0 { return true }
    guard let message = try? Message.parse(raw) else { return false }
    return message.edns?.options.contains { $0.code == EDNSOption.keepaliveCode } ?? false
  }
}

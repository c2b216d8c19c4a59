extension ResolverCore {
  /// Records what one leg of an exchange says of `server`: a measured round trip
  /// (not TCP's, which includes the handshake) or a TCP reply, either of which ends a hold (logged).
  func noteLeg(_ leg: ExchangeLeg, server: String, zone: DNSName, kind: ServerHealth.Kind) {
    var holdEnded = false
    if let rtt = leg.rttMs, leg.transport != .do53TCP {
      holdEnded = selection.record(server: server, rttMs: rtt, kind: kind)
    } else if leg.error == nil, leg.transport == .do53TCP {
      holdEnded = selection.recordReply(server: server, kind: kind)
    }
    if holdEnded { logger.notice("server \(server) (\(zone)) answers again; no longer held") }
  }

  /// Records an exchange with `server` sent at `sentAt` that got no reply; true when its last
  /// leg timed out (an extra DoT connection's timeout included, but not recorded). A timeout the
  /// resolution's own deadline caused says nothing about the server; one shared with the
  /// resolution that sent the query is counted there, once; and only a Do53 query's silence
  /// holds a server (an encrypted transport's is the policy's).
  func noteNoReply(_ result: ExchangeResult, server: String, sentAt: Double, zone: DNSName, kind: ServerHealth.Kind)
    -> Bool
  {
    guard let last = result.legs.last, last.error == .timeout || last.error == .laneTimeout else { return false }
    // An extra DoT connection's timeout (`DoTLanes`) is another pass's reason, not the server's.
    if last.error == .laneTimeout { return true }
    if !last.cutShort, !result.joined,
      selection.recordTimeout(server: server, sentAt: sentAt, kind: kind, silence: last.transport.isCleartext)
    {
      logger.notice(
        "server \(server) (\(zone)) unresponsive: \(configuration.unresponsiveAfter) timeouts in a row; held, probed again from 1 s on (R-24)"
      )
    }
    return true
  }
}

extension Array where Element == Hop {
  /// Appends the hop one leg of an exchange with `server` made for `question` (built in place:
  /// a `Hop` is large, and copying one costs on every upstream query).
  mutating func append(_ leg: ExchangeLeg, server: Candidate, zone: DNSName, question: Question) {
    append(
      Hop(
        server: server.endpoint.ip, nsName: server.nsName.map { NameText($0) }, zone: NameText(zone),
        qname: NameText(question.name), qtype: question.type.description, transport: leg.transport,
        rttMs: leg.rttMs, outcome: leg.error?.outcome ?? (leg.truncated ? "truncated" : "response")))
    self[count - 1].transportReason = leg.transportReason
    self[count - 1].resumed = leg.resumed
    self[count - 1].earlyData = leg.earlyData
  }
}

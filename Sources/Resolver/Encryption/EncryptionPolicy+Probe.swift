import NIOCore

/// What an operator's "probe now" did for one server.
public struct ProbeNowOutcome: Sendable, Equatable {
  /// Transports whose probe started now.
  public var started: [EncryptedTransport]
  /// Transports not probed, with the reason ("DoT session established", "probe cap reached", ...).
  public var skipped: [String]

  /// One line for the dashboard's footer and `sotto ctl probe`.
  public var summary: String {
    var parts: [String] = []
    if !started.isEmpty {
      parts.append("probing " + started.map(\.rawValue).joined(separator: ", "))
    }
    if !skipped.isEmpty { parts.append(skipped.joined(separator: "; ")) }
    return parts.isEmpty ? "nothing to probe" : parts.joined(separator: "; ")
  }
}

extension EncryptionPolicy {
  /// Operator override (the dashboard's `R`, `sotto ctl probe`), outside RFC 9539: ends damping
  /// for `ip` and at once opens a probe connection for every configured transport that may
  /// connect (OE-20/OE-21 still hold: no second handshake next to a pending or established one;
  /// the probe cap OE-40 still applies). The probe sends an SOA query for a zone the server
  /// serves over the new session and discards the reply (as for a query-triggered probe).
  /// Nil when the address is unknown or the policy is shutting down.
  public func probeNow(_ ip: String) -> ProbeNowOutcome? {
    let now = wallClock()
    let plan = state.withLock {
      s -> (
        ProbeNowOutcome, [(EncryptedTransport, Task<(any EncryptedSession)?, Never>)],
        ServerEndpoint, Message
      )? in
      guard !s.stopped, s.table.endDamping(ip, now: now), let record = s.table.servers[ip],
        let server = ServerEndpoint(ip: ip, port: s.table.settings.port)
      else { return nil }
      let zone = record.zones.sorted().first.flatMap { try? DNSName($0) } ?? .root
      let nsName = record.nsNames.sorted().first.flatMap { try? DNSName($0) }
      let context = ExchangeContext(nsName: nsName, zone: zone)
      var outcome = ProbeNowOutcome(started: [], skipped: [])
      var started: [(EncryptedTransport, Task<(any EncryptedSession)?, Never>)] = []
      let settings = s.table.settings
      for t in settings.transports {
        let st = record.state(t)
        if st.session == .established {
          outcome.skipped.append("\(t.rawValue) session already established")
        } else if st.session == .pending {
          outcome.skipped.append("\(t.rawValue) probe already in flight")
        } else if s.table.pendingHandshakes >= settings.maxConcurrentProbes {
          outcome.skipped.append(
            "\(t.rawValue) skipped: \(settings.maxConcurrentProbes) probes in flight")
        } else if let task = startConnection(t, server: server, context: context, state: &s) {
          started.append((t, task))
          outcome.started.append(t)
        }
      }
      var trigger = Message()
      var random = PooledRandom()
      trigger.header.id = UInt16.random(in: 0...UInt16.max, using: &random)
      trigger.questions = [Question(name: zone, type: .soa)]
      trigger.edns = EDNS(udpPayloadSize: 1232)
      return (outcome, started, server, trigger)
    }
    guard let (outcome, started, server, trigger) = plan else { return nil }
    for (t, connection) in started { startProbe(t, connection, server: server, trigger: trigger) }
    logger.info("operator probe of \(ip): \(outcome.summary)")
    return outcome
  }
}

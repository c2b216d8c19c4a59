import Foundation

/// How to send one query to one server, decided by the RFC 9539 state (§4.6).
public enum TransportDecision: Sendable, Equatable {
  /// Send over the established session of this transport (OE-17).
  case useSession(EncryptedTransport, reason: TransportReason)
  /// Cleartext is suppressed (OE-11) but no session is up: connect (or wait for the pending
  /// handshake) and send over it; on failure the query moves to Do53 (OE-28).
  case connectAndUse(EncryptedTransport, reason: TransportReason)
  /// Send over Do53; also start probes of these transports alongside (OE-10, OE-20).
  case do53(reason: TransportReason, probe: [EncryptedTransport])
}

/// The RFC 9539 state machine for every authoritative server address, as a plain value: events in,
/// decisions out, no I/O and no clock of its own (every call takes `now`, Unix seconds).
/// Read it next to `../shared/spec/rfc9539-opportunistic-encryption.md`.
public struct EncryptionTable: Sendable {
  public var settings: EncryptionSettings
  public private(set) var servers: [String: ServerRecord] = [:]
  /// The table's size at which `update` prunes it next (`prune`): servers unused for longer than
  /// both persistence and damping go, so a resolver running for weeks keeps the servers of its
  /// recent traffic, not every server it ever asked. Twice the size left after a prune: amortised
  /// O(1) per new server.
  private var pruneAt = Self.minPruneSize
  static let minPruneSize = 4_096
  /// Zones and NS names kept per server (for the dashboard and the state file): a big hosting
  /// provider's server is asked for thousands of zones, which no one reads and every save sorted.
  static let maxNamesPerServer = 16
  public init(settings: EncryptionSettings, servers: [ServerRecord] = []) {
    self.settings = settings
    for var s in servers {
      // Restart (spec §5): sessions and queues do not survive; a probe in flight at shutdown
      // leaves `initiated` without status, which `phase` treats as unknown (§6 gap 3).
      for (t, var st) in s.transports {
        st.session = .none
        st.lastActivity = nil
        st.consecutiveQueryTimeouts = 0
        s.transports[t] = st
      }
      self.servers[s.address] = s
    }
  }

  // MARK: Queries

  /// True when `address` has a record.
  public func knows(_ address: String) -> Bool { servers.index(forKey: address) != nil }

  /// The transport states of `address` (empty when unknown), found by one lookup (no hashing per
  /// transport). Dictionary.Values' getter still copies the record around them: `noteServer`,
  /// the per-query path, reads them in place instead.
  public func transports(_ address: String) -> TransportSlots {
    guard let i = servers.index(forKey: address) else { return TransportSlots() }
    return servers.values[i].transports
  }

  /// The state of `t` at `address` (all-null when never touched, OE-9).
  public func state(_ address: String, _ t: EncryptedTransport) -> TransportState {
    transports(address)[t] ?? TransportState()
  }

  /// `state` for a known `address`, nil for an unknown one (one lookup).
  public func stateIfKnown(_ address: String, _ t: EncryptedTransport) -> TransportState? {
    guard let i = servers.index(forKey: address) else { return nil }
    return servers.values[i].transports[t] ?? TransportState()
  }

  /// The derived state of `transport` at `address`.
  public func phase(_ address: String, _ transport: EncryptedTransport, now: Double) -> EncryptionPhase {
    state(address, transport).phase(at: now, settings: settings)
  }

  /// OE-11: true if any supported transport forbids cleartext to `address` now.
  public func cleartextSuppressed(_ address: String, now: Double) -> Bool {
    guard settings.enabled else { return false }
    let slots = transports(address)
    return settings.transports.contains { slots.contains($0) { $0.suppressesCleartext(at: now, settings: settings) } }
  }

  /// True if a query to `address` would go encrypted now: some transport is established or known
  /// good within persistence (for privacy-aware server choice). The same test as OE-11's: a
  /// server known good once but not answered within persistence (good-stale) gets Do53 and a
  /// probe, so it does not count, and a re-test sent to it beside an encrypted query would show
  /// the name in cleartext.
  public func encryptionWorks(_ address: String, now: Double) -> Bool { cleartextSuppressed(address, now: now) }

  /// Sessions pending right now, all servers (for the probe cap, OE-40).
  public var pendingHandshakes: Int {
    servers.values.reduce(0) { sum, r in sum + r.transports.count { $0.session == .pending } }
  }

  /// Established sessions right now.
  public var establishedSessions: Int {
    servers.values.reduce(0) { sum, r in sum + r.transports.count { $0.session == .established } }
  }

  /// Decides how a query to `address` goes out (OE-9..OE-12, OE-17, OE-20). Pure.
  public func decide(_ address: String, now: Double) -> TransportDecision {
    decide(transports(address), now: now)
  }

  /// `decide` for a server whose transport states are `slots` (looked up once per query).
  func decide(_ slots: TransportSlots, now: Double) -> TransportDecision {
    guard settings.enabled else { return .do53(reason: "Do53: encryption off", probe: []) }
    // OE-17: an established session carries everything; preferred transport first.
    for t in settings.transports where slots.contains(t, where: { $0.session == .established }) {
      return .useSession(t, reason: t == .dot ? "DoT: session established" : "DoQ: session established")
    }
    // OE-11: known good within persistence → no cleartext; reconnect (or join the pending one).
    for t in settings.transports {
      let pending = slots.read(t) { st -> Bool? in
        st.suppressesCleartext(at: now, settings: settings) ? st.session == .pending : nil
      }
      guard let pending else { continue }
      return .connectAndUse(t, reason: Self.reconnectReason(t, pending: pending))
    }
    // Otherwise Do53 (OE-12), with probes where allowed (OE-20) and resources permit (OE-40).
    var probes: [EncryptedTransport] = []
    // Kept as parts (one per transport) and written out only when read.
    var reason = TransportReason.Parts()
    // Counting pending handshakes walks every server: only done when a probe may start.
    var budget: Int?
    for t in settings.transports {
      let (phase, mayConnect, lastFailure) = slots.read(t) { st -> (EncryptionPhase, Bool, String?) in
        let phase = st.phase(at: now, settings: settings)
        // The failure is read only where the reason shows it (a damped transport).
        guard case .damped = phase else { return (phase, st.mayConnect(at: now, settings: settings), nil) }
        return (phase, false, st.lastFailure)
      }
      if mayConnect {
        let left = budget ?? settings.maxConcurrentProbes - pendingHandshakes
        budget = left
        if left > 0 {
          probes.append(t)
          budget = left - 1
          reason.append(.probeStarted(t))
        } else {
          reason.append(.probeSkipped(t, cap: settings.maxConcurrentProbes))
        }
      } else if case .damped(let until) = phase {
        reason.append(.damped(t, until: until, cause: lastFailure))
      } else if phase == .probing {
        reason.append(.probing(t))
      }
    }
    return .do53(reason: TransportReason(do53: reason), probe: probes)
  }

  /// OE-18: while `using` carries the queries, more-preferred transports that may connect are
  /// probed alongside (within the probe cap).
  public func preferredProbes(_ address: String, using: EncryptedTransport, now: Double) -> [EncryptedTransport] {
    preferredProbes(transports(address), using: using, now: now)
  }

  /// `preferredProbes` for a server whose transport states are `slots`.
  func preferredProbes(_ slots: TransportSlots, using: EncryptedTransport, now: Double) -> [EncryptedTransport] {
    guard let index = settings.transports.firstIndex(of: using) else { return [] }
    guard index > 0 else { return [] }
    // Counting pending handshakes walks every server: only done when a probe may start.
    var budget: Int?
    var out: [EncryptedTransport] = []
    for t in settings.transports[..<index] where slots.read(t, { $0.mayConnect(at: now, settings: settings) }) {
      let left = budget ?? settings.maxConcurrentProbes - pendingHandshakes
      guard left > 0 else { break }
      out.append(t)
      budget = left - 1
    }
    return out
  }

  // MARK: Events

  /// Notes where an address came from (for the state file and the dashboard).
  public mutating func noteServer(_ address: String, nsName: String?, zone: String, now: Double) {
    update(address, now: now) { r in
      if let nsName, r.nsNames.count < Self.maxNamesPerServer { r.nsNames.insert(nsName.lowercased()) }
      if r.zones.count < Self.maxNamesPerServer { r.zones.insert(zone.lowercased()) }
    }
  }

  /// `noteServer` for the iteration's names; the common case (the same pair as last time, kept
  /// in the record's `noted` memo) only refreshes `lastSeen`, in one lookup: it skips the names'
  /// presentation form and case folding, which cost more than the rest of the bookkeeping.
  /// Returns the server's transport states (read in the same lookup).
  @discardableResult
  public mutating func noteServer(_ address: String, nsName: DNSName?, zone: DNSName, now: Double) -> TransportSlots {
    if let i = servers.index(forKey: address) {
      // Through the modify accessor, which yields the record in place; a read would copy it.
      let slots = modify(&servers.values[i]) { r -> TransportSlots? in
        guard r.noted.holds(nsName: nsName, zone: zone) else { return nil }
        r.lastSeen = max(r.lastSeen, now)
        return r.transports
      }
      if let slots { return slots }
    }
    noteServer(address, nsName: nsName?.description, zone: zone.description, now: now)
    return update(address, now: now) { r in
      r.noted = NotedNames(nsName: nsName, zone: zone)
      return r.transports
    }
  }

  /// Counts a query sent; flags cleartext sent to a server that was known good when it was sent
  /// (must never happen). `suppressedAtSend` is `cleartextSuppressed` as it was at sending time.
  public mutating func noteQuery(
    _ address: String, transport: TransportKind, now: Double, suppressedAtSend: Bool? = nil
  ) {
    let suppressed = transport.isCleartext && (suppressedAtSend ?? cleartextSuppressed(address, now: now))
    update(address, now: now) { r in
      r.queries[transport, default: 0] += 1
      if suppressed { r.cleartextWhileGood += 1 }
    }
  }

  /// OE-21/OE-22: a connection attempt starts; returns the one resumption ticket to use, if any.
  public mutating func connectionStarted(_ address: String, _ t: EncryptedTransport, now: Double) -> [UInt8]? {
    var ticket: [UInt8]?
    updateState(address, t, now: now) { st in
      st.session = .pending
      st.initiated = now
      st.probes.started += 1
      ticket = st.resumptions.popLast()
    }
    let how = ticket == nil ? "full handshake" : "resuming with a ticket"
    servers[address]?.log(ServerEvent(time: now, transport: t, kind: .connecting, detail: how))
    return ticket
  }

  /// OE-27: the handshake finished at `now`.
  public mutating func handshakeSucceeded(
    _ address: String, _ t: EncryptedTransport, now: Double, certificate: CertificateCheck?, handshakeMs: Double?,
    tlsVersion: String?, resumed: Bool, earlyDataAccepted: Bool? = nil
  ) {
    updateState(address, t, now: now) { st in
      st.session = .established
      st.status = .success
      st.completed = now
      st.lastResponse = now
      st.lastActivity = now
      st.probes.succeeded += 1
      st.certificate = certificate ?? st.certificate
      st.handshakeMs = handshakeMs
      st.tlsVersion = tlsVersion
      st.resumed = resumed
      st.earlyDataAccepted = earlyDataAccepted
      st.consecutiveQueryTimeouts = 0
    }
    var notes: [String] = []
    // One decimal by hand: String(format:) goes through Foundation on the engine thread.
    if let handshakeMs, handshakeMs.isFinite { notes.append("\((handshakeMs * 10).rounded() / 10) ms") }
    if let tlsVersion { notes.append(tlsVersion) }
    if resumed { notes.append("resumed") }
    if let earlyDataAccepted { notes.append(earlyDataAccepted ? "0-RTT accepted" : "0-RTT rejected") }
    if let certificate {
      notes.append(
        certificate.isValid ? "certificate valid" : "certificate: \(certificate.problems.joined(separator: ", "))")
    }
    servers[address]?.log(
      ServerEvent(time: now, transport: t, kind: .established, detail: notes.joined(separator: ", ")))
  }

  /// OE-28 and §6 gaps 1–2: the handshake failed or timed out; damping starts now.
  public mutating func handshakeFailed(
    _ address: String, _ t: EncryptedTransport, now: Double, failure: String, timedOut: Bool, detail: String
  ) {
    updateState(address, t, now: now) { st in
      st.session = .none
      st.status = timedOut ? .timeout : .fail
      st.completed = now
      st.failures[failure, default: 0] += 1
      st.lastFailure = detail
      if timedOut { st.probes.timedOut += 1 } else { st.probes.failed += 1 }
    }
    servers[address]?.log(
      ServerEvent(
        time: now, transport: t, kind: timedOut ? .handshakeTimeout : .handshakeFailed,
        detail: "\(detail); damped until \(Self.clock(now + settings.damping))"))
  }

  /// A connection this machine could not set up (`EncryptedFailure.local`): the attempt is
  /// undone as if never started (its status, damping, counters and state-file entry stay as they
  /// were); only the server's history tells.
  /// `initiated` is the attempt's start as it was before; `ticket` the resumption ticket it took,
  /// unused (no ClientHello went out), so kept for the next attempt.
  public mutating func connectionFailedLocally(
    _ address: String, _ t: EncryptedTransport, now: Double, detail: String, initiated: Double?, ticket: [UInt8]?
  ) {
    updateState(address, t, now: now) { st in
      st.session = .none
      st.initiated = initiated
      st.probes.started -= 1
      if let ticket { st.resumptions.append(ticket) }
    }
    servers[address]?.logLocalFailure(
      ServerEvent(time: now, transport: t, kind: .localFailure, detail: "\(detail); not held against the server"))
  }

  /// OE-29 / OE-30: an established session ended. A clean close keeps `success`; a failure damps
  /// (with `completed = now`, §6 gap 2).
  /// `keepSession`: the session that ended is an older one and a newer connection is pending or
  /// up, whose mark stays. `superseded`: a newer connection replaced it, so a failure is counted
  /// and logged but does not damp (the newer connection's own result decides).
  public mutating func sessionClosed(
    _ address: String, _ t: EncryptedTransport, now: Double, clean: Bool, failure: String, detail: String,
    keepSession: Bool = false, superseded: Bool = false
  ) {
    updateState(address, t, now: now) { st in
      if !keepSession {
        st.session = .none
        st.lastActivity = nil
      }
      if !superseded { st.consecutiveQueryTimeouts = 0 }
      if !clean {
        // Counted either way; a superseded session's failure does not damp the live one's transport.
        st.failures[failure, default: 0] += 1
        st.lastFailure = detail
        if !superseded {
          st.status = .fail
          st.completed = now
        }
      }
    }
    let event =
      if clean {
        ServerEvent(time: now, transport: t, kind: .closed, detail: detail)
      } else if superseded {
        ServerEvent(
          time: now, transport: t, kind: .closed, detail: "an older session: \(detail); a newer connection replaced it")
      } else {
        ServerEvent(
          time: now, transport: t, kind: .sessionFailed,
          detail: "\(detail); damped until \(Self.clock(now + settings.damping))")
      }
    servers[address]?.log(event)
  }

  /// OE-35: a response arrived over `t`, with the server's edns-tcp-keepalive TIMEOUT in seconds
  /// (nil: none; RFC 7828). Returns `t`'s `resumed` and `earlyDataAccepted` for the exchange's
  /// trace, read in the same lookup.
  @discardableResult
  public mutating func responseReceived(
    _ address: String, _ t: EncryptedTransport, now: Double, keepalive: Double?
  ) -> (resumed: Bool, earlyData: Bool?) {
    updateState(address, t, now: now) { st in
      st.keepalive = keepalive
      st.lastResponse = now
      st.lastActivity = now
      st.consecutiveQueryTimeouts = 0
      return (st.resumed, st.earlyDataAccepted)
    }
  }

  /// OE-39: a query went out on `t`'s session now: `sessionsOverCap` closes the least recently
  /// active sessions first, and one with queries waiting on a slow server is active. Counted as
  /// `noteQuery` counts it (an encrypted query is never cleartext to a known-good server), in the
  /// same lookup of the record.
  public mutating func querySent(_ address: String, _ t: EncryptedTransport, now: Double) {
    update(address, now: now) { r in
      r.queries[t.kind, default: 0] += 1
      r.transports.update(t) { $0.lastActivity = now }
    }
  }

  /// §6 gap 4: a query on the session timed out. Returns true when the session should be treated
  /// as failed (too many in a row); the transport is then damped (OE-29).
  public mutating func queryTimedOut(_ address: String, _ t: EncryptedTransport, now: Double) -> Bool {
    queryFailed(address, t, now: now, timedOut: true)
  }

  /// §6 gap 4, extended to malformed responses (issue 8): a query on the session timed out or got a
  /// malformed response. Past `maxConsecutiveQueryTimeouts` in a row the transport has failed: status
  /// `fail`, damping from now (OE-29), so a server that completes handshakes but never answers (or
  /// answers garbage) cannot stay "good" and keep its zone from Do53. Returns true then; the caller
  /// closes the session and re-sends the query over Do53.
  public mutating func queryFailed(_ address: String, _ t: EncryptedTransport, now: Double, timedOut: Bool) -> Bool {
    var failed = false
    let limit = settings.maxConsecutiveQueryTimeouts
    let what = timedOut ? "timed out" : "failed (last: malformed response)"
    let detail = "\(limit) queries in a row \(what)"
    updateState(address, t, now: now) { st in
      st.consecutiveQueryTimeouts += 1
      failed = st.consecutiveQueryTimeouts >= limit
      if failed {
        st.consecutiveQueryTimeouts = 0
        st.status = .fail
        st.completed = now
        st.failures[timedOut ? "query-timeouts" : "malformed-responses", default: 0] += 1
        st.lastFailure = detail
      }
    }
    if failed {
      servers[address]?.log(
        ServerEvent(
          time: now, transport: t, kind: timedOut ? .queryTimeouts : .queryFailures,
          detail: "\(detail); damped until \(Self.clock(now + settings.damping))"))
    }
    return failed
  }

  /// OE-23: a resumption ticket arrived; keep the newest few.
  public mutating func ticketReceived(_ address: String, _ t: EncryptedTransport, ticket: [UInt8], now: Double) {
    let cap = settings.maxTicketsPerServer
    updateState(address, t, now: now) { st in
      st.resumptions.append(ticket)
      if st.resumptions.count > cap { st.resumptions.removeFirst(st.resumptions.count - cap) }
    }
  }

  /// T-6: our own address changed (another network). Every resumption ticket is dropped, so no
  /// handshake on the new network presents one from the old and links the two. Returns how many.
  public mutating func dropResumptions() -> Int {
    var dropped = 0
    for i in servers.indices { modify(&servers.values[i]) { dropped += $0.dropResumptions() } }
    return dropped
  }

  /// OE-39: the established sessions to close so that at most `maxSessions` stay open, least
  /// recently active first.
  public func sessionsOverCap() -> [(String, EncryptedTransport)] {
    var open: [(String, EncryptedTransport, Double)] = []
    for (addr, r) in servers {
      for (t, st) in r.transports where st.session == .established { open.append((addr, t, st.lastActivity ?? 0)) }
    }
    guard open.count > settings.maxSessions else { return [] }
    return open.sorted { $0.2 < $1.2 }.prefix(open.count - settings.maxSessions).map { ($0.0, $0.1) }
  }

  /// Drops servers unused for longer than both persistence and damping (state file hygiene).
  public mutating func prune(now: Double) {
    let horizon = max(settings.persistence, settings.damping)
    servers = servers.filter { _, r in
      now - r.lastSeen <= horizon || r.transports.values.contains { $0.session != .none }
    }
  }

  /// Forgets everything about one address (`sotto ctl forget`).
  public mutating func forget(_ address: String) {
    servers[address] = nil
  }

  /// Operator override (`sotto ctl probe`, the dashboard's `R`), outside RFC 9539: ends damping
  /// of every failed transport of `address` now, so the next query to it starts a probe. The
  /// failure history and counters stay. Returns false when the address is unknown.
  @discardableResult
  public mutating func endDamping(_ address: String, now: Double) -> Bool {
    guard var r = servers[address] else { return false }
    var ended: [String] = []
    for (t, var st) in r.transports where st.status == .fail || st.status == .timeout {
      if st.session == .none {
        st.completed = now - settings.damping - 1
        r.transports[t] = st
        ended.append(t.rawValue)
      }
    }
    let detail = ended.isEmpty ? "nothing was damped" : "damping of \(ended.sorted().joined(separator: ", ")) ended"
    r.log(ServerEvent(time: now, transport: nil, kind: .operatorProbe, detail: detail))
    servers[address] = r
    return true
  }

  // MARK: Helpers

  /// Mutates the record in place (no copy of the record or its collections per event).
  @discardableResult
  mutating func update<R>(_ address: String, now: Double, _ body: (inout ServerRecord) -> R) -> R {
    if servers.count >= pruneAt, servers[address] == nil {
      prune(now: now)
      pruneAt = max(Self.minPruneSize, 2 * servers.count)
    }
    return modify(&servers[address, default: ServerRecord(address: address, now: now)]) { r in
      r.lastSeen = max(r.lastSeen, now)
      return body(&r)
    }
  }

  @discardableResult
  mutating func updateState<R>(
    _ address: String, _ t: EncryptedTransport, now: Double, _ body: (inout TransportState) -> R
  ) -> R {
    update(address, now: now) { r in r.transports.update(t, body) }
  }

  /// Why a query waits for a session to a known-good server. String literals: the reasons of the
  /// common cases cost no allocation per query.
  static func reconnectReason(_ t: EncryptedTransport, pending: Bool) -> TransportReason {
    switch (t, pending) {
    case (.dot, true): "DoT: handshake in progress"
    case (.dot, false): "DoT: known good, reconnecting"
    case (.doq, true): "DoQ: handshake in progress"
    case (.doq, false): "DoQ: known good, reconnecting"
    }
  }

  /// `2026-11-29 14:03 UTC` for reasons (when a `TransportReason` is read). Built by hand: a
  /// DateFormatter per call cost more CPU than the rest of the policy's work per exchange.
  static func clock(_ t: Double) -> String {
    guard t.isFinite, abs(t) < 1e15 else { return "never" }  // damping may be infinite
    var seconds = time_t(t.rounded(.down))
    var parts = tm()
    guard gmtime_r(&seconds, &parts) != nil else { return "?" }
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    let day = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
    return "\(day) \(two(parts.tm_hour)):\(two(parts.tm_min)) UTC"
  }
}

/// Totals over all servers, for monitoring (OE-43): queries per transport, probe outcomes, and
/// cleartext sent to known-good servers (must be 0).
public struct EncryptionTotals: Sendable, Equatable {
  public var queries: [TransportKind: Int] = [:]
  public var probes = ProbeCounters()
  public var cleartextWhileGood = 0
  public var servers = 0
  /// Share of authoritative queries that went encrypted, 0...1.
  public var encryptedShare: Double {
    let total = queries.values.reduce(0, +)
    guard total > 0 else { return 0 }
    return Double(queries.filter { !$0.key.isCleartext }.values.reduce(0, +)) / Double(total)
  }
}

extension EncryptionTable {
  /// Sums the per-server counters.
  public var totals: EncryptionTotals {
    var t = EncryptionTotals()
    t.servers = servers.count
    for r in servers.values {
      for (k, v) in r.queries { t.queries[k, default: 0] += v }
      t.cleartextWhileGood += r.cleartextWhileGood
      for st in r.transports.values {
        t.probes.started += st.probes.started
        t.probes.succeeded += st.probes.succeeded
        t.probes.failed += st.probes.failed
        t.probes.timedOut += st.probes.timedOut
      }
    }
    return t
  }
}

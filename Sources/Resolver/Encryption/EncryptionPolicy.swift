import Foundation
import Logging
import NIOCore

/// The RFC 9539 policy at work: for every authoritative query it asks the `EncryptionTable` how to
/// send it, runs probes alongside Do53 without ever waiting for them (OE-10), keeps one session per
/// server and transport, and moves queries to Do53 when a handshake or session fails (OE-28..OE-30).
public final class EncryptionPolicy: UpstreamExchanger {
  struct SessionKey: Hashable {
    var ip: String
    var transport: EncryptedTransport
  }
  enum Slot {
    case pending(PendingConnection)
    case established(any EncryptedSession)
  }
  /// A connection being set up, and the number its `onClose` reports with. A class, so that the
  /// slot's payloads stay one object pointer each: with the task and the number inline, Swift kept
  /// the enum's case in the spare high bits of the session pointer of `.established`, which
  /// LeakSanitizer cannot recognise, and a session alive at exit was reported as leaked.
  final class PendingConnection: Sendable {
    let task: Task<(any EncryptedSession)?, Never>
    let id: UInt64
    /// Set before the task returns nil when this machine could not set the connection up
    /// (`EncryptedFailure.local`): what its waiters are told, whatever the table says by then.
    let localFailure: LocalFailureBox
    init(_ task: Task<(any EncryptedSession)?, Never>, id: UInt64, localFailure: LocalFailureBox) {
      self.task = task
      self.id = id
      self.localFailure = localFailure
    }
  }
  struct State {
    var table: EncryptionTable
    var slots: [SessionKey: Slot] = [:]
    /// Numbers connections, so that an end reported while its own connection is still pending is
    /// told apart from an older session's.
    var nextConnectionID: UInt64 = 0
    /// Ends reported before the connecting task recorded the handshake's success (the session's
    /// thread got there first), by connection: recorded right after that success, in order.
    var endedBeforeRecorded: [UInt64: EncryptedFailure] = [:]
    /// Connections whose task has not yet recorded its outcome: an end they report meanwhile is
    /// parked in `endedBeforeRecorded`, whatever the slot or the table holds by then.
    var connecting: Set<UInt64> = []
    /// Connections whose task found its slot taken from it (the server forgotten meanwhile): their
    /// sessions are closed unrecorded, and so is their end.
    var disowned: Set<UInt64> = []
    /// The connection whose session was last established per key: the end of an older one,
    /// reported late, must not end the newer one's record.
    var establishedID: [SessionKey: UInt64] = [:]
    var probes: [UUID: Task<Void, Never>] = [:]
    /// Connections this machine could not set up (`EncryptedFailure.local`).
    var localFailures = 0
    /// The local failures logged as warnings so far (each text once; the rest at debug).
    var localFailuresLogged: Set<String> = []
    /// Set at shutdown: no new connections, Do53 only.
    var stopped = false
    /// Changes of our address seen (not counting the first address).
    var addressChanges = 0
    /// The number of our source address the last query saw (`LocalAddressWatch`; 0: none yet).
    var addressGeneration: UInt64 = 0

    /// Whether `key`'s slot still holds connection `id` pending. If not (forgotten), the
    /// connection is disowned: an end it reported already is dropped, a later one will be.
    mutating func owns(_ key: SessionKey, _ id: UInt64) -> Bool {
      connecting.remove(id)
      if case .pending(let p) = slots[key], p.id == id { return true }
      if endedBeforeRecorded.removeValue(forKey: id) == nil { disowned.insert(id) }
      return false
    }

    /// Whether `session` is the one in use for `key` (not closed as it came up, not forgotten).
    func holds(_ key: SessionKey, _ session: any EncryptedSession) -> Bool {
      if case .established(let x) = slots[key] { return x === session }
      return false
    }
  }

  let do53: any UpstreamExchanger
  /// `do53` when it is Sotto's plain Do53, called as its own type (`ResolverCore.plainExchanger`).
  private let plainDo53: Do53Exchanger?
  let connectors: [EncryptedTransport: any EncryptedConnector]
  let state: StateLock<State>
  let wallClock: @Sendable () -> Double
  let time: any TimeSource
  let logger: Logger
  /// Identical queries to one server in flight, whatever transport carries them.
  let inflight = InflightExchanges()
  /// Our source address; when it changes, tickets are dropped and sessions closed (T-6, T-37).
  let addressWatch: LocalAddressWatch?

  public init(
    settings: EncryptionSettings, do53: any UpstreamExchanger, connectors: [any EncryptedConnector],
    saved: [ServerRecord] = [], time: any TimeSource = SystemTimeSource(),
    wallClock: @escaping @Sendable () -> Double = { TurnClock.engine.wallSeconds() },
    addressWatch: LocalAddressWatch? = nil, logger: Logger
  ) {
    self.do53 = do53
    self.plainDo53 = do53.asKnown.plain
    self.addressWatch = addressWatch
    self.connectors = Dictionary(connectors.map { ($0.transport, $0) }, uniquingKeysWith: { a, _ in a })
    var s = settings
    s.transports = s.transports.filter { t in connectors.contains { $0.transport == t } }
    var initial = State(table: EncryptionTable(settings: s, servers: saved))
    // The address the saved tickets were checked against (`EncryptionStore.load(network:)`): a
    // change after this, even before the first query, drops them.
    initial.addressGeneration = addressWatch?.generation() ?? 0
    self.state = StateLock(initial)
    self.wallClock = wallClock
    self.time = time
    self.logger = logger
  }

  /// A copy of the whole table (for the state file, `sotto state`, the dashboard).
  public var table: EncryptionTable { state.withLock { $0.table } }

  public func prefersForPrivacy(_ ip: String) -> Bool {
    let now = wallClock()
    return state.withLock { $0.table.encryptionWorks(ip, now: now) }
  }

  /// Encrypted connections this machine could not set up (no descriptor, no local port, ...),
  /// which were not held against their servers.
  public var localConnectionFailures: Int { state.withLock { $0.localFailures } }

  /// Changes of this machine's address seen so far (T-6, T-37).
  public var addressChanges: Int { state.withLock { $0.addressChanges } }

  /// Logs a local failure: as a warning the first time its text comes (an operator must raise a
  /// limit), else at debug (a process out of descriptors fails every connection).
  func logLocalFailure(_ error: EncryptedFailure, _ t: EncryptedTransport, to endpoint: ServerEndpoint) {
    let first = state.withLock {
      $0.localFailuresLogged.count < 64 && $0.localFailuresLogged.insert(error.detail).inserted
    }
    let text = "\(t.rawValue) to \(endpoint): \(error.detail); not held against the server"
    if first {
      logger.warning("\(text) (logged once; counted in ctl stats as localConnectionFailures)")
    } else {
      logger.debug("\(text)")
    }
  }

  /// Exchanges that joined an identical query to the same server already in flight.
  public var coalescedQueries: Int { inflight.joined.value }

  /// An identical query to the same server already in flight is joined instead of sent again,
  /// over whichever transport it went: concurrent resolutions that need the same step (a QNAME
  /// minimisation step, a shared NS address) otherwise each sent a copy over DoT or DoQ.
  public nonisolated(nonsending) func exchange(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
  ) async
    -> ExchangeResult
  {
    guard let key = InflightExchanges.Key(query, server) else {
      return await exchangeNow(query, server: server, context: context, timeout: timeout)
    }
    return await inflight.join(key, budget: context.budget, time: time) { left in
      var context = context
      context.budget = left
      // Joined here whatever the transport: the Do53 leg does not look for an identical query again.
      context.coalesced = true
      return await self.exchangeNow(query, server: server, context: context, timeout: timeout)
    }
  }

  nonisolated(nonsending) func exchangeNow(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
  ) async
    -> ExchangeResult
  {
    let now = wallClock()
    // No wait, leg or fallback below outlasts the resolution's deadline.
    let deadline = ExchangeDeadline(context.budget, time: time)
    let address = addressWatch?.generation() ?? 0  // lock-free until a look is due
    var retired: AddressChange?
    // The established session of the transport chosen, found under the same lock as the decision:
    // the common case then skips `exchangeEncrypted` and `session`, two async frames and a second
    // lock and session lookup per encrypted query.
    var ready: (any EncryptedSession)?
    // Decide and, for probes, mark them pending in one step so concurrent queries agree (OE-20/21).
    let (decision, connections) = state.withLock {
      s -> (TransportDecision, [(EncryptedTransport, Task<(any EncryptedSession)?, Never>)]) in
      // Only forward: a caller that read the number before another's look is not a change back.
      if address > s.addressGeneration { retired = addressChanged(to: address, in: &s) }
      let slots = s.table.noteServer(server.ip, nsName: context.nsName, zone: context.zone, now: now)
      if s.stopped { return (.do53(reason: "Do53: shutting down", probe: []), []) }
      let decision = s.table.decide(slots, now: now)
      let probes: [EncryptedTransport]
      switch decision {
      case .do53(_, let p): probes = p
      case .useSession(let t, _), .connectAndUse(let t, _):
        probes = s.table.preferredProbes(slots, using: t, now: now)
        // As `session` finds it: a session that is not reusable (aged) is left to `session`.
        if case .established(let session) = s.slots[SessionKey(ip: server.ip, transport: t)],
          session.isActive, session.isReusable
        {
          ready = session
        }
      }
      let started = probes.compactMap { t in
        startConnection(t, server: server, context: context, state: &s).map { (t, $0) }
      }
      return (decision, started)
    }
    retired?.finish(logger)
    for (t, connection) in connections { startProbe(t, connection, server: server, trigger: query) }
    switch decision {
    case .useSession(let t, let reason), .connectAndUse(let t, let reason):
      if let ready {
        return await sendEncrypted(
          query, t, session: ready, server: server, context: context, timeout: timeout, reason: reason,
          deadline: deadline)
      }
      return await exchangeEncrypted(
        query, t, server: server, context: context, timeout: timeout, reason: reason, deadline: deadline)
    case .do53(let reason, _):
      return await sendDo53(
        query, server: server, context: context, timeout: timeout, reason: reason, deadline: deadline)
    }
  }

  /// A query over `t`, the transport `decide` chose: its session, a reconnection (waited for within
  /// the deadline), or after a failure another transport still known good (`tried`: those failed
  /// for this query already), else Do53.
  nonisolated(nonsending) func exchangeEncrypted(
    _ query: Message, _ t: EncryptedTransport, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount,
    reason: TransportReason, deadline: ExchangeDeadline, tried: Set<EncryptedTransport> = []
  ) async -> ExchangeResult {
    // A reconnection carries this query as 0-RTT early data where the transport allows (OE-24).
    // A pending connection is waited for as long as two exchange timeouts (a handshake is two
    // round trips; a query's timeout is two smoothed RTTs) and never past the resolution's
    // deadline. Then the query is a timeout and the resolution moves on to another server:
    // not Do53 to this one, whose encryption is known to work (OE-11).
    let full = 2 * Double(timeout.nanoseconds) / 1e9
    let wait = min(full, deadline.remaining ?? .infinity)
    let (session, early, waited, localFailure) = await session(
      t, server: server, context: context, earlyQuery: query, within: wait)
    if waited == .outOfTime {
      return Self.outOfTime(
        t, waited: wait, for: "its connection to come up", reason: reason, cutShort: wait < full)
    }
    if let session, let early {
      return await receiveEarly(
        early, query, t, session: session, server: server, context: context, timeout: timeout, reason: reason,
        deadline: deadline, tried: tried)
    }
    if let session {
      return await sendEncrypted(
        query, t, session: session, server: server, context: context, timeout: timeout, reason: reason,
        deadline: deadline, tried: tried)
    }
    if let localFailure {
      // This machine could not connect: the server is still known good, so its cleartext stays
      // suppressed (OE-11). The query fails here and the resolution moves on.
      let leg = ExchangeLeg(
        transport: t.kind, rttMs: nil, error: .io(localFailure), truncated: false, transportReason: reason)
      return ExchangeResult(legs: [leg], response: nil)
    }
    // OE-28: the (re)connection failed; the query moves to Do53, unless another transport of
    // the server is still known good (OE-11): then over that one, never in cleartext.
    let why = state.withLock { $0.table.state(server.ip, t).lastFailure } ?? "failed"
    if let other = otherKnownGood(than: tried.union([t]), server: server) {
      return await exchangeEncrypted(
        query, other, server: server, context: context, timeout: timeout,
        reason: "\(other.rawValue): \(t.rawValue) connection \(why)", deadline: deadline, tried: tried.union([t]))
    }
    return await sendDo53(
      query, server: server, context: context, timeout: timeout, reason: "Do53: \(t.rawValue) connection \(why)",
      deadline: deadline)
  }

  /// A transport of `server` other than `tried` that still blocks cleartext (OE-11): its session
  /// is established or it is known good within the persistence time. In preference order.
  func otherKnownGood(than tried: Set<EncryptedTransport>, server: ServerEndpoint) -> EncryptedTransport? {
    let now = wallClock()
    return state.withLock { s in
      let slots = s.table.transports(server.ip)
      let settings = s.table.settings  // not `self.settings`: that takes this lock again
      return settings.transports.first { t in
        guard !tried.contains(t), let st = slots[t] else { return false }
        return st.session == .established || st.suppressesCleartext(at: now, settings: settings)
      }
    }
  }

  /// The result of an exchange that waited `seconds` on `t` in vain (for a connection still being
  /// set up, an early-data reply): a timeout, so the resolution moves on.
  static func outOfTime(
    _ t: EncryptedTransport, waited seconds: Double, for what: String, reason: TransportReason, cutShort: Bool
  ) -> ExchangeResult {
    var leg = ExchangeLeg(
      transport: t.kind, rttMs: nil, error: .timeout, truncated: false,
      transportReason:
        "\(reason.description); timed out after \(Int((seconds * 1000).rounded())) ms waiting for \(what)")
    leg.cutShort = cutShort
    return ExchangeResult(legs: [leg], response: nil, cutShort: cutShort)
  }

  /// Waits (at most `seconds`) until the probes started so far have finished; `lookup` calls this
  /// before saving state so that one-shot runs learn from each other.
  /// The limit holds even while a probe waits on its handshake or query timers: a task group would
  /// wait for its child awaiting the probes, which cancelling cannot stop.
  public func waitForProbes(upTo seconds: Double) async {
    let tasks = state.withLock { Array($0.probes.values) }
    guard !tasks.isEmpty else { return }
    _ = await BoundedWait.value(within: seconds) { finish in
      Task {
        for t in tasks { await t.value }
        finish(())
      }
    }
  }

  /// Forgets everything about `ip` and closes its sessions (`sotto ctl forget`). False when unknown.
  public func forget(_ ip: String) -> Bool {
    let (known, sessions) = state.withLock { s -> (Bool, [any EncryptedSession]) in
      let known = s.table.knows(ip)
      s.table.forget(ip)
      var open: [any EncryptedSession] = []
      for t in EncryptedTransport.allCases {
        let key = SessionKey(ip: ip, transport: t)
        s.establishedID[key] = nil
        if case .established(let x) = s.slots.removeValue(forKey: key) { open.append(x) }
      }
      return (known, open)
    }
    for x in sessions { x.close() }
    return known
  }

  /// Our source address changed (another network), unless this is the first one seen. No ticket
  /// from before is used again (T-6: a resumption would link the two networks), and the sessions
  /// set up from the old address are taken out of use, to be closed cleanly by the caller (T-37:
  /// new connections rather than migration). Their ends are clean closes, so the servers stay
  /// known good: left open, they would time out on the new network and be damped for a day.
  /// Queries outstanding on those sessions fail as they close, and are sent again over a new
  /// encrypted connection (`closedLocally`), not in cleartext.
  func addressChanged(to generation: UInt64, in s: inout State) -> AddressChange? {
    let first = s.addressGeneration == 0
    s.addressGeneration = generation
    guard !first else { return nil }
    s.addressChanges += 1
    let tickets = s.table.dropResumptions()
    var open: [any EncryptedSession] = []
    for (key, slot) in s.slots {
      guard case .established(let x) = slot else { continue }
      s.slots[key] = nil
      open.append(x)
    }
    return AddressChange(sessions: open, tickets: tickets)
  }

  /// What an address change took out of use: closed and logged by `finish`, outside the lock.
  struct AddressChange {
    let sessions: [any EncryptedSession]
    let tickets: Int
    func finish(_ logger: Logger) {
      for x in sessions { x.close() }
      logger.notice(
        "our source address changed: \(sessions.count) encrypted session(s) closed, \(tickets) resumption ticket(s) dropped (T-6, T-37)"
      )
    }
  }

  /// Applies an address change not yet seen by a query (before the state file is saved), and
  /// returns the table with the fingerprint of the network its tickets are from (nil: no address
  /// at all; without its tickets when their network is not known for sure).
  public func tableForSaving() -> (table: EncryptionTable, network: String?) {
    guard let watch = addressWatch else { return (table, nil) }
    let address = watch.generation()
    let (change, table, generation) = state.withLock { s in
      let change = address > s.addressGeneration ? addressChanged(to: address, in: &s) : nil
      return (change, s.table, s.addressGeneration)
    }
    change?.finish(logger)
    let seen = watch.lastSeen()
    let network = LocalAddressWatch.fingerprint(of: seen.address)
    guard seen.generation != generation else { return (table, network) }
    // A look between the two readings found another address: whose network the tickets are from
    // is not known for sure, so none is saved.
    var unsure = table
    _ = unsure.dropResumptions()
    return (unsure, network)
  }

  /// Closes every session cleanly and starts no new ones (shutdown).
  public func closeAll() {
    let sessions = state.withLock { s -> [any EncryptedSession] in
      s.stopped = true
      for probe in s.probes.values { probe.cancel() }
      return s.slots.values.compactMap { if case .established(let x) = $0 { x } else { nil } }
    }
    for s in sessions { s.close() }
  }

  // MARK: Sending

  nonisolated(nonsending) func sendDo53(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount, reason: TransportReason,
    sessionFallback: Bool = false, deadline: ExchangeDeadline
  ) async -> ExchangeResult {
    // A fallback that would start with the budget spent is not sent.
    guard let cut = deadline.cap(timeout) else { return ExchangeResult(legs: [], response: nil, cutShort: true) }
    let suppressed = !sessionFallback && state.withLock { $0.table.cleartextSuppressed(server.ip, now: wallClock()) }
    var result: ExchangeResult
    if let plainDo53 {
      result = await plainDo53.exchange(query, server: server, context: deadline.passing(context), timeout: cut)
    } else {
      result = await do53.exchange(query, server: server, context: deadline.passing(context), timeout: cut)
    }
    if cut < timeout, result.response == nil, let last = result.legs.indices.last, result.legs[last].error == .timeout {
      result.legs[last].cutShort = true
      result.cutShort = true
    }
    let now = wallClock()
    state.withLock { s in
      // A leg that never left the machine (`.io`: no socket) sent nothing to count.
      for leg in result.legs where leg.error?.outcome != TransportError.io("").outcome {
        s.table.noteQuery(server.ip, transport: leg.transport, now: now, suppressedAtSend: suppressed)
      }
    }
    for i in result.legs.indices { result.legs[i].transportReason = reason }
    return result
  }

  nonisolated(nonsending) func sendEncrypted(
    _ query: Message, _ t: EncryptedTransport, session: any EncryptedSession, server: ServerEndpoint,
    context: ExchangeContext, timeout: TimeAmount, reason: TransportReason, counted: Bool = false,
    deadline: ExchangeDeadline, tried: Set<EncryptedTransport> = []
  ) async -> ExchangeResult {
    guard let queryTimeout = deadline.cap(timeout) else {
      return ExchangeResult(legs: [], response: nil, cutShort: true)
    }
    let start = time.now()
    if !counted { state.withLock { $0.table.querySent(server.ip, t, now: wallClock()) } }
    do {
      let response = try await session.query(query, timeout: queryTimeout)
      return encryptedSuccess(
        response, t, server: server, rtt: (time.now() - start) * 1000, reason: reason)
    } catch {
      let st = state.withLock { $0.table.stateIfKnown(server.ip, t) }
      var leg = ExchangeLeg(transport: t.kind, rttMs: nil, error: error, truncated: false, transportReason: reason)
      leg.resumed = st?.resumed ?? false
      leg.earlyData = st?.earlyDataAccepted
      // A timeout that only came because the resolution's deadline cut the query's time short
      // says nothing about the server: not counted against its session (§6 gap 4).
      if error == .timeout || error == .laneTimeout, queryTimeout < timeout {
        leg.cutShort = true
        return ExchangeResult(legs: [leg], response: nil, cutShort: true)
      }
      // A timeout means the session was alive while the query waited (a session that ends fails its
      // queries with `.closed`), also one the server's TIMEOUT of 0 took out of use (RFC 7828).
      // An extra DoT connection's timeout is a per-query failure too, never a reason for Do53,
      // even once the session's first connection has ended (`DoTLanes`).
      if session.isActive || error == .timeout || error == .laneTimeout {
        // OE-37: a per-query failure (timeout, stream reset, malformed reply) is a failed query for
        // this server, not a reason for cleartext; timeouts and malformed replies that pile up fail
        // the transport (§6 gap 4): it is damped, and this query goes over Do53 as after OE-29.
        guard countQueryFailure(error, t, session: session, server: server) else {
          return ExchangeResult(legs: [leg], response: nil)
        }
        if let other = otherKnownGood(than: tried.union([t]), server: server) {
          // OE-11: another transport of the server still known good carries it, not Do53.
          return Self.after(
            leg,
            await exchangeEncrypted(
              query, other, server: server, context: context, timeout: timeout,
              reason:
                "\(other.rawValue): \(t.rawValue) failed \(settings.maxConsecutiveQueryTimeouts) queries in a row",
              deadline: deadline, tried: tried.union([t])))
        }
        return Self.after(
          leg,
          await sendDo53(
            query, server: server, context: context, timeout: timeout,
            reason: "Do53: \(t.rawValue) failed \(settings.maxConsecutiveQueryTimeouts) queries in a row",
            sessionFallback: true, deadline: deadline))
      }
      // Sotto closed the session itself (a new network, an aged DoQ connection, the session
      // cap): nothing the server did, and `t` is still known good, so the query goes again over
      // a new connection of `t`, not in cleartext (once: `tried`).
      let now = wallClock()
      if session.closedLocally, !tried.contains(t),
        state.withLock({ s in
          // Not damped meanwhile (OE-29: a transport that failed sends its queries over Do53).
          guard let st = s.table.stateIfKnown(server.ip, t), st.status == .success else { return false }
          return !s.stopped && st.suppressesCleartext(at: now, settings: s.table.settings)
        })
      {
        return Self.after(
          leg,
          await exchangeEncrypted(
            query, t, server: server, context: context, timeout: timeout,
            reason: "\(t.rawValue): session closed by Sotto with this query outstanding, sent again",
            deadline: deadline,
            tried: tried.union([t])))
      }
      // OE-29/OE-30: the session ended with this query outstanding; it is re-sent over another
      // transport of the server still known good (OE-11), else over Do53. That fallback is the
      // RFC's, so it is not counted as cleartext to a known-good server.
      if let other = otherKnownGood(than: tried.union([t]), server: server) {
        return Self.after(
          leg,
          await exchangeEncrypted(
            query, other, server: server, context: context, timeout: timeout,
            reason: "\(other.rawValue): \(t.rawValue) session lost, query re-sent", deadline: deadline,
            tried: tried.union([t])))
      }
      return Self.after(
        leg,
        await sendDo53(
          query, server: server, context: context, timeout: timeout,
          reason: "Do53: \(t.rawValue) session lost, query re-sent", sessionFallback: true, deadline: deadline))
    }
  }

  /// `retry` with the failed `leg` before its own legs: the hops show both.
  static func after(_ leg: ExchangeLeg, _ retry: ExchangeResult) -> ExchangeResult {
    var result = retry
    result.legs.insert(leg, at: 0)
    return result
  }

  /// Counts a timeout or malformed response on a live session (§6 gap 4); true when that made the
  /// transport fail, in which case the session is closed (the table has damped it already).
  func countQueryFailure(
    _ error: TransportError, _ t: EncryptedTransport, session: any EncryptedSession, server: ServerEndpoint
  ) -> Bool {
    let timedOut = error == .timeout
    guard timedOut || error.isMalformed else { return false }
    let failed = state.withLock { s in
      // A server forgotten meanwhile is not brought back by its late failures, and a session
      // taken out of use (replaced after an address change, DoQ ageing, the cap) does not count
      // against the one in use.
      s.table.knows(server.ip) && s.holds(SessionKey(ip: server.ip, transport: t), session)
        && s.table.queryFailed(server.ip, t, now: wallClock(), timedOut: timedOut)
    }
    if failed {
      logger.debug("\(t.rawValue) to \(server.ip): transport failed after repeated query failures")
      session.close()
    }
    return failed
  }

  /// The response to a query sent as early data (or right after the handshake) on a new session.
  nonisolated(nonsending) func receiveEarly(
    _ early: EventLoopFuture<Message>, _ query: Message, _ t: EncryptedTransport, session: any EncryptedSession,
    server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount, reason: TransportReason,
    deadline: ExchangeDeadline, tried: Set<EncryptedTransport> = []
  ) async -> ExchangeResult {
    let start = time.now()
    state.withLock { $0.table.querySent(server.ip, t, now: wallClock()) }
    // The handshake is done: the reply is one round trip away, as for any query on the session.
    let full = Double(timeout.nanoseconds) / 1e9
    let wait = min(full, deadline.remaining ?? .infinity)
    guard let outcome = await BoundedWait.value(within: wait, { finish in early.whenComplete(finish) }) else {
      return Self.outOfTime(t, waited: wait, for: "the reply to its early data", reason: reason, cutShort: wait < full)
    }
    if case .success(let response) = outcome {
      // T-7: a DoQ server that will not answer in 0-RTT says REFUSED with EDE 26 (Too Early), and
      // the query goes again on the same connection, its handshake done (RFC 9250 §4.5).
      if response.rcode == .refused,
        response.edns?.options.contains(where: { $0.extendedErrorInfoCode == EDNSOption.tooEarly }) == true
      {
        return await sendEncrypted(
          query, t, session: session, server: server, context: context, timeout: timeout,
          reason: "\(reason.description); its 0-RTT copy was answered Too Early (EDE 26), sent again",
          counted: true, deadline: deadline, tried: tried)
      }
      return encryptedSuccess(
        response, t, server: server, rtt: (time.now() - start) * 1000, reason: reason)
    }
    // The early attempt failed; the session may still be fine: send the query normally.
    return await sendEncrypted(
      query, t, session: session, server: server, context: context, timeout: timeout, reason: reason,
      counted: true, deadline: deadline, tried: tried)
  }

  func encryptedSuccess(
    _ response: Message, _ t: EncryptedTransport, server: ServerEndpoint, rtt: Double, reason: TransportReason
  )
    -> ExchangeResult
  {
    let flags = state.withLock { s in recordResponse(response, t, server: server.ip, in: &s) }
    var leg = ExchangeLeg(transport: t.kind, rttMs: rtt, error: nil, truncated: false, transportReason: reason)
    leg.resumed = flags.resumed
    leg.earlyData = flags.earlyData
    return ExchangeResult(legs: [leg], response: response)
  }

  /// OE-35: a reply came over `t`, with the server's edns-tcp-keepalive when over DoT (RFC 7828).
  /// Caller holds the lock. Returns `t`'s session flags for the exchange's trace.
  @discardableResult
  func recordResponse(
    _ response: Message, _ t: EncryptedTransport, server ip: String, in s: inout State
  ) -> (resumed: Bool, earlyData: Bool?) {
    s.table.responseReceived(ip, t, now: wallClock(), keepalive: t == .dot ? TCPKeepalive.seconds(in: response) : nil)
  }

  // MARK: Sessions and probes

  /// The established session of `t` to `server`, joining a pending handshake or starting one.
  /// With `earlyQuery`, a connection started here sends it as early data and its response future
  /// comes back too; joining an existing or pending session never does. A pending connection is
  /// waited for at most `limit` seconds (it goes on after `.outOfTime`).
  nonisolated(nonsending) func session(
    _ t: EncryptedTransport, server: ServerEndpoint, context: ExchangeContext, earlyQuery: Message? = nil,
    within limit: Double = .infinity
  )
    async -> (
      session: (any EncryptedSession)?, early: EventLoopFuture<Message>?, waited: SessionWait, localFailure: String?
    )
  {
    let key = SessionKey(ip: server.ip, transport: t)
    // Only a connection started here can carry the early query, so only then is there a box.
    var box: EarlyResponseBox? = nil
    // A session the server has been silent on for most of the idle timeout (T-32, DoQ): closed
    // once the lock is released, and replaced by a new connection.
    var aged: (any EncryptedSession)?
    // An established session (the common case) is used as is: no task to wrap it.
    let slot = state.withLock { s -> Slot? in
      switch s.slots[key] {
      case .established(let session) where session.isActive && session.isReusable:
        return .established(session)
      case .pending(let pending):
        return .pending(pending)
      case .established(let session) where session.isActive:
        aged = session
        fallthrough
      default:
        let early = EarlyResponseBox()
        box = early
        return startConnection(t, server: server, context: context, earlyQuery: earlyQuery, early: early, state: &s)
          .flatMap { _ in s.slots[key] }
      }
    }
    aged?.close()
    switch slot {
    case .established(let session): return (session, nil, .done, nil)
    case .pending(let pending):
      let task = pending.task
      let session: (any EncryptedSession)?
      if limit.isFinite {
        let outcome = await BoundedWait.value(within: limit) { finish in Task { finish(await task.value) } }
        guard let outcome else { return (nil, nil, .outOfTime, nil) }
        session = outcome
      } else {
        session = await task.value
      }
      return (session, box?.future, .done, session == nil ? pending.localFailure.value : nil)
    case nil: return (nil, nil, .done, nil)
    }
  }

  /// Whether `session(_:server:context:earlyQuery:within:)` saw the connection's outcome.
  enum SessionWait { case done, outOfTime }

  /// A probe: connect alongside the Do53 query and, once up, send the triggering query over it
  /// too (OE-27, §6 gap 6) — its reply only proves that DNS works there.
  func startProbe(
    _ t: EncryptedTransport, _ connection: Task<(any EncryptedSession)?, Never>, server: ServerEndpoint,
    trigger: Message
  ) {
    let id = UUID()
    // The task is created and registered under one lock: its own removal (at its end) raced with
    // the registration, and a probe whose connection had already failed could remove its entry
    // before it was added, leaving a finished task in `probes` for good (seen as adjacent
    // accesses to `probes[id]` in a ThreadSanitizer report of the TSan integration run).
    state.withLock { s in
      s.probes[id] = Task {
        // Not over a session closed as it came up (forgotten meanwhile, shutdown, failed at once).
        let key = SessionKey(ip: server.ip, transport: t)
        if let session = await connection.value, session.isActive, !Task.isCancelled,
          self.state.withLock({ s in
            // A session being closed reads active until its close runs on the engine thread.
            guard !s.stopped, s.holds(key, session) else { return false }
            s.table.noteQuery(server.ip, transport: t.kind, now: self.wallClock())
            return true
          })
        {
          do throws(TransportError) {
            let response = try await session.query(
              trigger, timeout: .seconds(Int64(max(1, self.settings.timeout))))
            self.state.withLock { s in
              // Not for a server forgotten meanwhile: that would bring its record back.
              guard s.table.knows(server.ip) else { return }
              self.recordResponse(response, t, server: server.ip, in: &s)
            }
          } catch {
            // A probe whose query times out or gets a malformed response counts like any other (§6 gap 4).
            if session.isActive || error == .timeout {
              _ = self.countQueryFailure(error, t, session: session, server: server)
            }
          }
        }
        _ = self.state.withLock { $0.probes.removeValue(forKey: id) }
      }
    }
  }

  var settings: EncryptionSettings { state.withLock { $0.table.settings } }

  /// Starts a connection; caller holds the lock (`state`). Marks the session pending (OE-21).
  func startConnection(
    _ t: EncryptedTransport, server: ServerEndpoint, context: ExchangeContext, earlyQuery: Message? = nil,
    early: EarlyResponseBox? = nil, state s: inout State
  ) -> Task<(any EncryptedSession)?, Never>? {
    guard let connector = connectors[t], let endpoint = server.with(port: s.table.settings.port) else { return nil }
    let key = SessionKey(ip: server.ip, transport: t)
    let initiatedBefore = s.table.stateIfKnown(server.ip, t)?.initiated
    let taken = s.table.connectionStarted(server.ip, t, now: wallClock())
    let network = s.addressGeneration
    let settings = s.table.settings
    let id = s.nextConnectionID
    s.nextConnectionID &+= 1
    s.connecting.insert(id)
    let localFailure = LocalFailureBox()
    let task = Task { () -> (any EncryptedSession)? in
      let ticket = self.ticketFromThisNetwork(taken, network: network)
      do throws(EncryptedFailure) {
        let onTicket: @Sendable ([UInt8]) -> Void = { [weak self] ticket in
          guard let self else { return }
          self.state.withLock { s in
            // Not for a server forgotten meanwhile: that would bring its record back. Nor from a
            // connection made before our address changed: a ticket of the old network (T-6).
            guard s.table.knows(server.ip), s.addressGeneration == network else { return }
            s.table.ticketReceived(server.ip, t, ticket: ticket, now: self.wallClock())
          }
        }
        let onClose: @Sendable (EncryptedFailure) -> Void = { [weak self] failure in
          self?.sessionEnded(key, connection: id, failure: failure)
        }
        let handshake = TimeAmount.milliseconds(Int64(settings.timeout * 1000))
        let idle = TimeAmount.milliseconds(Int64(settings.idleTimeout * 1000))
        let session: any EncryptedSession
        let info: TLSHandshakeInfo
        if let earlyConnector = connector as? any EarlyDataConnector, let earlyQuery, let early, ticket != nil {
          let (s, i, future) = try await earlyConnector.connectWithEarlyData(
            to: endpoint, expectedName: context.nsName, resumption: ticket, earlyQuery: earlyQuery,
            handshakeTimeout: handshake, idleTimeout: idle, onTicket: onTicket, onClose: onClose)
          early.set(future)
          (session, info) = (s, i)
        } else {
          // OE-10: a probe (no query waits for it: no `early` box) handshakes at low priority on
          // the engine thread, after the answers of the same turn.
          let attempt = await HandshakePriority.$low.withValue(early == nil) {
            () async -> Result<(any EncryptedSession, TLSHandshakeInfo), EncryptedFailure> in
            do throws(EncryptedFailure) {
              return .success(
                try await connector.connect(
                  to: endpoint, expectedName: context.nsName, resumption: ticket, handshakeTimeout: handshake,
                  idleTimeout: idle, onTicket: onTicket, onClose: onClose))
            } catch {
              return .failure(error)
            }
          }
          (session, info) = try attempt.get()
        }
        // Whoever waits gets the session even when it is not kept: an early-data answer may be in.
        let (toClose, fate) = self.state.withLock { s -> ([any EncryptedSession], String) in
          // Forgotten while it connected (`sotto ctl forget`): nothing is recorded, the session closes.
          guard s.owns(key, id) else { return ([session], "forgotten while connecting, closed") }
          s.table.handshakeSucceeded(
            server.ip, t, now: self.wallClock(), certificate: info.certificate, handshakeMs: info.handshakeMs,
            tlsVersion: info.tlsVersion, resumed: info.resumed, earlyDataAccepted: info.earlyDataAccepted)
          // The session already ended (OE-29/OE-30), reported while this task was on its way here.
          if let failure = s.endedBeforeRecorded.removeValue(forKey: id) {
            s.slots[key] = nil
            self.recordEnd(key, failure: failure, in: &s)
            return ([], "up, and ended already (\(failure.detail))")
          }
          // Set up from the address we had before a change seen meanwhile (T-37): the server is
          // good, the session is not kept (its waiting query goes again on a new one).
          if s.addressGeneration != network {
            s.slots[key] = nil
            s.establishedID[key] = id  // its end, coming, is recorded as this session's
            return ([session], "up from our old address, closed")
          }
          s.slots[key] = .established(session)
          s.establishedID[key] = id
          // OE-39: keep within the session cap, least recently active first.
          let overCap = s.table.sessionsOverCap().compactMap { addr, tr in
            if case .established(let x) = s.slots[SessionKey(ip: addr, transport: tr)] { x } else { nil }
          }
          // Shutdown began while it connected: what it learnt is kept, the session closes cleanly.
          if s.stopped { return (overCap + [session], "up while shutting down, closed") }
          return (overCap, "up (\(info.tlsVersion), resumed: \(info.resumed))")
        }
        for other in toClose { other.close() }
        self.logger.debug("\(t.rawValue) to \(endpoint): \(fate)")
        return session
      } catch {
        if error.isLocal { localFailure.set(error.detail) }
        self.state.withLock { s in
          s.connecting.remove(id)
          s.endedBeforeRecorded[id] = nil
          if error.isLocal { s.localFailures += 1 }
          // Forgotten while it connected: nothing to record (and no session whose end could come).
          guard case .pending(let mine) = s.slots[key], mine.id == id else { return }
          s.slots[key] = nil
          if error.isLocal {
            // No descriptor, no local port: nothing the server did (no damping, nothing saved).
            s.table.connectionFailedLocally(
              server.ip, t, now: self.wallClock(), detail: error.detail, initiated: initiatedBefore, ticket: ticket)
            return
          }
          s.table.handshakeFailed(
            server.ip, t, now: self.wallClock(), failure: error.className, timedOut: error.isTimeout,
            detail: error.detail)
        }
        if error.isLocal {
          logLocalFailure(error, t, to: endpoint)
        } else {
          self.logger.debug("\(t.rawValue) to \(endpoint) failed: \(error.detail)")
        }
        return nil
      }
    }
    s.slots[key] = .pending(PendingConnection(task, id: id, localFailure: localFailure))
    return task
  }

  /// `ticket`, unless our address changed since `network` (the policy's number when the ticket
  /// was taken): a look now, not up to 5 s later, so that no ticket from the old network is
  /// presented on the new one (T-6). The ticket is dropped, not put back.
  func ticketFromThisNetwork(_ ticket: [UInt8]?, network: UInt64) -> [UInt8]? {
    guard ticket != nil, network > 0, let watch = addressWatch else { return ticket }
    return watch.refresh() > network ? nil : ticket
  }

  /// An established session ended: clean close keeps `success` (OE-30), anything else damps (OE-29),
  /// unless a newer connection of the same transport has replaced it (then only counted and logged).
  /// An end reported while the session's own connection is still pending (its handshake done, the
  /// connecting task not yet back) waits for that task to record the success first: recorded now,
  /// the success would overwrite it, and a session that failed at once would leave the server
  /// "established" instead of damped.
  func sessionEnded(_ key: SessionKey, connection: UInt64, failure: EncryptedFailure) {
    state.withLock { s in
      // Its own connecting task has not recorded the success yet: parked for it, to be recorded
      // right after the success (or dropped, the server forgotten meanwhile).
      if s.connecting.contains(connection) {
        s.endedBeforeRecorded[connection] = failure
        return
      }
      // A disowned connection's session (closed by its own task), or the server was forgotten:
      // recording the end would bring back a record `sotto ctl forget` removed.
      if s.disowned.remove(connection) != nil || !s.table.knows(key.ip) { return }
      // An older session's end, late (one closed for idling, DoQ ageing or an address change as
      // its replacement came up): recorded, but the newer connection's mark stays (pending: OE-21,
      // no second handshake next to it; established: still in use), and an unclean end does not
      // damp the transport (OE-29 is about the session in use; damping would send the next
      // queries in cleartext beside a good session). The newer connection's own result decides.
      if case .pending = s.slots[key] {
        return recordEnd(key, failure: failure, keepSession: true, superseded: true, in: &s)
      }
      if let newest = s.establishedID[key], newest != connection {
        return recordEnd(key, failure: failure, keepSession: true, superseded: true, in: &s)
      }
      if case .established(let session) = s.slots[key], !session.isActive { s.slots[key] = nil }
      recordEnd(key, failure: failure, in: &s)
    }
  }

  private func recordEnd(
    _ key: SessionKey, failure: EncryptedFailure, keepSession: Bool = false, superseded: Bool = false,
    in s: inout State
  ) {
    s.table.sessionClosed(
      key.ip, key.transport, now: wallClock(), clean: failure == .cleanClose, failure: failure.className,
      detail: failure.detail, keepSession: keepSession, superseded: superseded)
  }
}

/// What a connecting task that failed locally tells the queries waiting for it (set before it ends).
final class LocalFailureBox: Sendable {
  private let detail = StateLock<String?>(nil)
  func set(_ text: String) { detail.withLock { $0 = text } }
  var value: String? { detail.withLock { $0 } }
}

/// Hands the early-data response future from the connecting task to the query that started it.
final class EarlyResponseBox: Sendable {
  private let value = StateLock<EventLoopFuture<Message>?>(nil)
  func set(_ f: EventLoopFuture<Message>?) { value.withLock { $0 = f } }
  var future: EventLoopFuture<Message>? { value.withLock { $0 } }
}

import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

@testable import Resolver

/// A fake encrypted session answering from a script; it can be made to break.
final class FakeSession: EncryptedSession {
  let answer: @Sendable (Message) -> Message
  let alive = Mutex(true)
  /// Out of use but still answering what it was given (a DoT server's keepalive TIMEOUT of 0).
  let draining = Mutex(false)
  /// The keepalive TIMEOUT its answers carry, units of 100 ms (RFC 7828).
  let keepalive = Mutex<UInt16?>(nil)
  let sent = Mutex(0)
  /// When set, each query waits this long before its answer (to keep queries in flight together).
  let delay = Mutex<Duration?>(nil)
  /// When set, each query's answer waits for the gate to open, whatever the query's timeout.
  let gate = Mutex<AnswerGate?>(nil)
  /// What a reply slower than the query's timeout throws: `.laneTimeout` for a query that waited
  /// on one of a DoT session's extra connections (`DoTLanes`).
  let timeoutError = Mutex(TransportError.timeout)
  let onClose: @Sendable (EncryptedFailure) -> Void
  init(answer: @escaping @Sendable (Message) -> Message, onClose: @escaping @Sendable (EncryptedFailure) -> Void) {
    self.answer = answer
    self.onClose = onClose
  }
  func query(_ message: Message, timeout: TimeAmount) async throws(TransportError) -> Message {
    guard alive.withLock({ $0 }) else { throw .closed }
    sent.withLock { $0 += 1 }
    if let gate = gate.withLock({ $0 }) {
      await withCheckedContinuation { (opened: CheckedContinuation<Void, Never>) in gate.hold { opened.resume() } }
    }
    if let d = delay.withLock({ $0 }) {
      // A reply slower than the query's timeout is a timeout, as on a real session.
      let limit = Duration.nanoseconds(timeout.nanoseconds)
      try? await Task.sleep(for: min(d, limit))
      if d > limit { throw timeoutError.withLock { $0 } }
    }
    // Closed while the answer was on its way (when `failsOutstandingOnClose`): lost, as on a real session.
    if failsOutstandingOnClose.withLock({ $0 }), !alive.withLock({ $0 }) { throw .closed }
    var reply = answer(message)
    if let units = keepalive.withLock({ $0 }) {
      var edns = reply.edns ?? EDNS()
      edns.options.append(EDNSOption(code: EDNSOption.keepaliveCode, data: [UInt8(units >> 8), UInt8(units & 0xFF)]))
      reply.edns = edns
    }
    return reply
  }
  var isActive: Bool { alive.withLock { $0 } && !draining.withLock { $0 } }
  /// When set, `close()` only notes the request and the session stays active, as a real session
  /// does until its close runs on the engine thread.
  let closesLater = Mutex(false)
  let closeRequested = Mutex(false)
  func close() {
    closedByUs.withLock { $0 = true }
    if closesLater.withLock({ $0 }) { return closeRequested.withLock { $0 = true } }
    end(.cleanClose)
  }
  let closedByUs = Mutex(false)
  /// A query still waiting for its answer when the session ends fails with `.closed`.
  let failsOutstandingOnClose = Mutex(false)
  var closedLocally: Bool { closedByUs.withLock { $0 } }
  /// False once the test says the session should be replaced (DoQ's T-32 ageing).
  let reusable = Mutex(true)
  var isReusable: Bool { reusable.withLock { $0 } }
  /// Takes the session out of use and reports its end as clean, as a DoT session told TIMEOUT 0 does.
  func drain() {
    draining.withLock { $0 = true }
    onClose(.cleanClose)
  }
  func end(_ why: EncryptedFailure) {
    let was = alive.withLock { a in
      defer { a = false }
      return a
    }
    if was { onClose(why) }
  }
}

/// A fake DoT connector: per address, succeed, fail with a class, or hang for a while then time out.
final class FakeConnector: EncryptedConnector {
  enum Behaviour: Sendable {
    case succeed
    case fail(EncryptedFailure)
    case slow(Duration)
    /// The handshake completes, then the session ends (`onClose`) before `connect` returns: the
    /// session's thread got there before the connecting task recorded the success.
    case succeedThenEnd(EncryptedFailure)
    /// Hangs until the gate opens, then times out: pending for as long as a test needs.
    case hangUntil(Gate)
    /// Hangs until the gate opens, then succeeds.
    case succeedAfter(Gate)
    /// Hangs until the gate opens, then succeeds, and the session ends before `connect` returns.
    case succeedAfterThenEnd(Gate, EncryptedFailure)
    /// Hangs until the gate opens, then fails with the class.
    case failAfter(Gate, EncryptedFailure)
  }
  /// Opened once by a test.
  final class Gate: Sendable {
    let isOpen = Mutex(false)
    func open() { isOpen.withLock { $0 = true } }
    func wait() async {
      while !isOpen.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
    }
  }
  /// Sessions made from now on only note a close (see `FakeSession.closesLater`).
  var sessionsCloseLater: Bool { closeLater.withLock { $0 } }
  let closeLater = Mutex(false)
  let transport: EncryptedTransport
  let behaviour: @Sendable (String) -> Behaviour
  let attempts = Mutex<[String]>([])
  /// The resumption ticket each attempt was given (nil: a full handshake), in order.
  let resumptions = Mutex<[[UInt8]?]>([])
  let sessions = Mutex<[String: FakeSession]>([:])
  init(_ behaviour: @escaping @Sendable (String) -> Behaviour, transport: EncryptedTransport = .dot) {
    self.behaviour = behaviour
    self.transport = transport
  }

  func connect(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?, handshakeTimeout: TimeAmount,
    idleTimeout: TimeAmount, onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo) {
    attempts.withLock { $0.append(endpoint.description) }
    resumptions.withLock { $0.append(resumption) }
    switch behaviour(endpoint.ip) {
    case .fail(let f): throw f
    case .slow(let d):
      try? await Task.sleep(for: d)
      throw .handshakeTimeout
    case .hangUntil(let gate):
      await gate.wait()
      throw .handshakeTimeout
    case .failAfter(let gate, let failure):
      await gate.wait()
      throw failure
    case .succeed, .succeedThenEnd, .succeedAfter, .succeedAfterThenEnd:
      let b = behaviour(endpoint.ip)
      if case .succeedAfter(let gate) = b { await gate.wait() }
      if case .succeedAfterThenEnd(let gate, _) = b { await gate.wait() }
      onTicket([1, 2, 3])
      let s = FakeSession(answer: { q in Self.reply(to: q) }, onClose: onClose)
      s.closesLater.withLock { $0 = sessionsCloseLater }
      sessions.withLock { $0[endpoint.ip] = s }
      if case .succeedThenEnd(let failure) = b { s.end(failure) }
      if case .succeedAfterThenEnd(_, let failure) = b { s.end(failure) }
      let cert = CertificateCheck(problems: ["self-signed"], subject: "/CN=test")
      return (
        s,
        TLSHandshakeInfo(
          tlsVersion: "TLSv1.3", alpn: "dot", resumed: resumption != nil, certificate: cert, handshakeMs: 1)
      )
    }
  }

  static func reply(to q: Message) -> Message {
    var m = q
    m.header.qr = true
    m.header.aa = true
    if let name = q.questions.first?.name, let a = IPv4Address("198.51.100.1") {
      m.answers = [ResourceRecord(name: name, type: .a, ttl: 60, rdata: .a(a))]
    }
    return m
  }
}

/// A Do53 stand-in that answers every query and records which servers were asked.
final class FakeDo53: UpstreamExchanger {
  let log = Mutex<[String]>([])
  /// The timeout and budget of every exchange, in order.
  let limits = Mutex<[(timeout: TimeAmount, budget: Double?)]>([])
  nonisolated(nonsending) func exchange(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
  ) async -> ExchangeResult {
    log.withLock { $0.append(server.ip) }
    limits.withLock { $0.append((timeout, context.budget)) }
    return ExchangeResult(
      legs: [ExchangeLeg(transport: .do53UDP, rttMs: 1, error: nil, truncated: false)],
      response: FakeConnector.reply(to: query))
  }
  var count: Int { log.withLock { $0.count } }
}

@Suite struct EncryptionPolicyTests: PolicyFixture {

  func policy(
    _ connector: FakeConnector, _ do53: FakeDo53, timeout: Double = 1,
    clock: @escaping @Sendable () -> Double = { 1_000 }
  )
    -> EncryptionPolicy
  {
    var s = EncryptionSettings()
    s.timeout = timeout
    return EncryptionPolicy(
      settings: s, do53: do53, connectors: [connector], wallClock: clock, logger: Logger(label: "t"))
  }

  /// The first query to the server: over Do53, with a DoT probe, waited for (the server is then
  /// known good, with an established session when the connector succeeds). Up to 30 s: the probe
  /// sends its query over the new session, and a test that counts what the session sent must not
  /// start counting before that (it did, with a 2 s bound, under ASan on a loaded machine).
  func firstQueryProbes(_ p: EncryptionPolicy) async {
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    await p.waitForProbes(upTo: 30)
  }

  /// A policy whose first query's probe set up a DoT session to the server, its Do53 stand-in
  /// (one query so far) and that session.
  func establishedSession(timeout: Double = 1) async throws -> (EncryptionPolicy, FakeDo53, FakeSession) {
    let connector = FakeConnector { _ in .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53, timeout: timeout)
    await firstQueryProbes(p)
    let session = try #require(connector.sessions.withLock { $0["192.0.2.7"] }, "no DoT session")
    return (p, do53, session)
  }

  /// The milliseconds in a leg's reason "…; timed out after N ms waiting for <what>", if it says so.
  static func waitedMs(_ reason: String, for what: String) -> Int? {
    guard let end = reason.range(of: " ms waiting for \(what)"),
      let start = reason.range(of: "timed out after ", range: reason.startIndex..<end.lowerBound)
    else { return nil }
    return Int(reason[start.upperBound..<end.lowerBound])
  }

  /// A server known good over DoQ and DoT, both sessions closed while idle: the query goes to
  /// reconnect DoQ (preferred), which now fails (UDP 853 blocked, say). It must go over DoT, still
  /// known good, not in cleartext (OE-11).
  @Test func aFailedReconnectionMovesToAnotherKnownGoodTransportNotToCleartext() async throws {
    let doqFails = Mutex(false)
    let doq = FakeConnector({ _ in doqFails.withLock { $0 } ? .fail(.refused) : .succeed }, transport: .doq)
    let dot = FakeConnector({ _ in .succeed }, transport: .dot)
    let do53 = FakeDo53()
    var settings = EncryptionSettings()
    settings.timeout = 1
    let p = EncryptionPolicy(
      settings: settings, do53: do53, connectors: [doq, dot], wallClock: { 1_000 }, logger: Logger(label: "t"))
    // Known good over both: each transport's probe succeeds (DoT's after DoQ's, on later queries).
    for _ in 0..<4 {
      _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
      await p.waitForProbes(upTo: 30)
    }
    let doqSession = try #require(doq.sessions.withLock { $0["192.0.2.7"] }, "no DoQ session")
    let dotSession = try #require(dot.sessions.withLock { $0["192.0.2.7"] }, "no DoT session: \(p.table)")
    doqSession.end(.cleanClose)
    dotSession.end(.cleanClose)
    doqFails.withLock { $0 = true }
    let before = do53.count
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(r.response != nil, "\(r.legs)")
    #expect(r.legs.last?.transport == .dot, "\(r.legs.map(\.transport))")
    #expect(do53.count == before, "sent in cleartext while DoT was known good")
  }

  @Test func firstQueryGoesDo53WithAProbeThenDoTOnly() async {
    let connector = FakeConnector { _ in .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    let first = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(first.legs.map(\.transport) == [.do53UDP])
    #expect(first.legs.first?.reason == "Do53: DoT probe started")
    await p.waitForProbes(upTo: 30)
    #expect(connector.attempts.withLock { $0 } == ["192.0.2.7:853"])
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
    for _ in 0..<5 {
      let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
      #expect(r.legs.map(\.transport) == [.dot])
      #expect(r.response?.answers.count == 1)
    }
    #expect(do53.count == 1)  // OE-11: no cleartext once known good
    #expect(p.table.servers["192.0.2.7"]?.cleartextWhileGood == 0)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).certificate?.problems == ["self-signed"])
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).resumptions.count == 1)
  }

  @Test func identicalQueriesInFlightOverASessionAreSentOnce() async throws {
    let (p, do53, session) = try await establishedSession()
    let before = session.sent.withLock { $0 }
    // The answer waits until the other four have joined the query in flight, however late the
    // tasks run.
    let gate = AnswerGate()
    defer { gate.open() }
    session.gate.withLock { $0 = gate }
    let running = Task {
      await withTaskGroup(of: ExchangeResult.self) { group in
        for _ in 0..<5 {
          group.addTask { await p.exchange(query, server: server, context: context, timeout: .seconds(20)) }
        }
        return await group.reduce(into: []) { $0.append($1) }
      }
    }
    for _ in 0..<1000 where p.inflight.waiting < 4 || session.sent.withLock({ $0 }) - before < 1 {
      try await Task.sleep(for: .milliseconds(10))
    }
    gate.open()
    let results = await running.value
    // R-33: one copy on the wire; every resolution gets the answer.
    #expect(results.allSatisfy { $0.response?.answers.count == 1 && $0.legs.map(\.transport) == [.dot] })
    #expect(session.sent.withLock { $0 } - before == 1)
    #expect(p.coalescedQueries == 4)
    #expect(do53.count == 1)
  }

  @Test func slowProbeNeverDelaysTheDo53Answer() async {
    // The probe hangs until the test ends; the answer does not wait for it (OE-10). The exchange
    // may take 20 s, so 5 s is neither its timeout nor the probe's, and leaves room for a test
    // task resumed late on a loaded machine.
    let gate = FakeConnector.Gate()
    defer { gate.open() }
    // Should the answer wait for the probe after all, it fails after 15 s rather than hanging.
    let opener = Task {
      try? await Task.sleep(for: .seconds(15))
      gate.open()
    }
    defer { opener.cancel() }
    let connector = FakeConnector { _ in .hangUntil(gate) }
    let do53 = FakeDo53()
    let p = policy(connector, do53, timeout: 20)
    let clock = ContinuousClock()
    let start = clock.now
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(20))
    let elapsed = clock.now - start
    #expect(r.response != nil)
    #expect(elapsed < .seconds(5))
    // While the probe is pending, more queries keep going over Do53 without a second probe.
    let again = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(again.legs.first?.reason == "Do53: DoT probe in flight")
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).probes.started == 1)
  }

  @Test func refusedProbeDampsAndKeepsDo53() async {
    let connector = FakeConnector { _ in .fail(.refused) }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    await firstQueryProbes(p)
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(r.legs.map(\.transport) == [.do53UDP])
    let reason = r.legs.first?.reason ?? ""
    #expect(reason.contains("damped until"))
    #expect(connector.attempts.withLock { $0.count } == 1)  // one probe per damping period
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).failures == ["refused": 1])
  }

  @Test func brokenSessionMovesTheQueryToDo53AndDamps() async {
    let connector = FakeConnector { _ in .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    await firstQueryProbes(p)
    connector.sessions.withLock { $0["192.0.2.7"] }?.end(.resetWithQueriesOutstanding)
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(r.response != nil)
    #expect(r.legs.last?.transport == .do53UDP)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_001) == .damped(until: 1_000 + 86_400))
  }

  @Test func aSessionThatFailsBeforeItsHandshakeIsRecordedIsDampedNotEstablished() async {
    // The session's end reaches the policy while the connection is still pending (its thread
    // was quicker than the connecting task): the failure is recorded after the success, so the
    // server ends damped (OE-29), with the events in the order they happened.
    let connector = FakeConnector { _ in .succeedThenEnd(.resetWithQueriesOutstanding) }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    await firstQueryProbes(p)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_001) == .damped(until: 1_000 + 86_400))
    let kinds = p.table.servers["192.0.2.7"]?.history.map(\.kind) ?? []
    #expect(kinds == [.connecting, .established, .sessionFailed])
    // Damped: the next query goes over Do53 without a new handshake.
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(r.legs.map(\.transport) == [.do53UDP])
    #expect(connector.attempts.withLock { $0.count } == 1)
    #expect(p.state.withLock { $0.endedBeforeRecorded.isEmpty })
  }

  @Test func anEstablishedSlotKeepsItsSessionPointerWhereLeakSanitizerSeesIt() {
    // With a slot enum whose case sat in the pointer's spare high bits, the ASan integration run
    // reported a DoT session alive at exit as leaked (40 bytes, DoTConnection).
    let session = FakeSession(answer: { $0 }, onClose: { _ in })
    var slot = EncryptionPolicy.Slot.established(session)
    let word = withUnsafeBytes(of: &slot) { $0.load(as: UInt.self) }
    #expect(word == UInt(bitPattern: Unmanaged.passUnretained(session).toOpaque()))
  }

  @Test func anOlderSessionsLateEndLeavesTheNewerConnectionPending() async throws {
    let slow = Mutex(false)
    let gate = FakeConnector.Gate()
    let connector = FakeConnector { _ in slow.withLock { $0 } ? .hangUntil(gate) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    await firstQueryProbes(p)
    let old = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    // Out of use without its end reported yet (as a DoT session is between marking itself
    // inactive and calling onClose): the next query starts a new connection, which hangs.
    old.draining.withLock { $0 = true }
    slow.withLock { $0 = true }
    let q = Task { await p.exchange(query, server: server, context: context, timeout: .seconds(1)) }
    for _ in 0..<3000 where connector.attempts.withLock({ $0.count }) < 2 {
      try await Task.sleep(for: .milliseconds(10))
    }
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).session == .pending)
    old.end(.resetWithQueriesOutstanding)
    // The old session's failure is counted and logged; the new connection's pending mark
    // (OE-21) stays, and its own result, not the old session's, decides the transport's state.
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).session == .pending)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).status == .success)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).failures.values.reduce(0, +) == 1)
    let logged = try #require(p.table.servers["192.0.2.7"]?.history.last)
    #expect(logged.kind == .closed && logged.detail.contains("an older session"), "\(logged)")
    gate.open()
    _ = await q.value
    #expect(connector.attempts.withLock { $0.count } == 2)
    // The new connection timed out: that damps the transport.
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).status == .timeout)
  }

  @Test func waitingForProbesStopsAtItsLimitWhileAProbeHangs() async {
    // Shutdown waits `probeWait` for probes; a task group waited for its child awaiting them, so
    // a hanging probe held shutdown until the probe's own timers ran out.
    let gate = FakeConnector.Gate()
    let connector = FakeConnector { _ in .hangUntil(gate) }
    let p = policy(connector, FakeDo53())
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    let opener = Task {
      try? await Task.sleep(for: .seconds(10))
      gate.open()
    }
    await p.waitForProbes(upTo: 0.2)
    #expect(!gate.isOpen.withLock { $0 }, "waitForProbes returned only once the probe ended")
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).session == .pending)
    gate.open()
    opener.cancel()
    await p.waitForProbes(upTo: 30)
    #expect(p.state.withLock { $0.probes.isEmpty })
  }

  /// A policy whose first query started a probe through `connector`, held on `gate`; the server
  /// is forgotten, then the gate opens and the probe runs to its end.
  func forgetWhileConnecting(_ connector: FakeConnector, _ gate: FakeConnector.Gate) async -> EncryptionPolicy {
    let p = policy(connector, FakeDo53())
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(p.forget("192.0.2.7"))
    gate.open()
    await p.waitForProbes(upTo: 30)
    return p
  }

  /// Nothing left of any connection in the policy's bookkeeping.
  static func leavesNoBookkeeping(_ p: EncryptionPolicy) -> Bool {
    p.state.withLock {
      $0.slots.isEmpty && $0.disowned.isEmpty && $0.connecting.isEmpty && $0.endedBeforeRecorded.isEmpty
    }
  }

  @Test(arguments: [true, false])
  func aServerForgottenWhileItConnectsStaysForgotten(succeeds: Bool) async {
    // `sotto ctl forget` while a probe's handshake ran: its late success (or failure), its session
    // ticket and its probe query wrote the record back, and a success left an open session.
    let gate = FakeConnector.Gate()
    let connector = FakeConnector { _ in succeeds ? .succeedAfter(gate) : .hangUntil(gate) }
    let p = await forgetWhileConnecting(connector, gate)
    #expect(p.table.servers["192.0.2.7"] == nil)
    #expect(Self.leavesNoBookkeeping(p))
    if succeeds {
      let session = connector.sessions.withLock { $0["192.0.2.7"] }
      #expect(session?.alive.withLock { $0 } == false, "the forgotten server's new session was left open")
    }
  }

  @Test func aForgottenServersSessionThatEndsBeforeItsTaskRecordsLeavesNothingBehind() async {
    // The end came while the task was still on its way (and the server already forgotten): it
    // was neither parked nor recorded, so the task disowned the connection and waited for an
    // end that had come already; its number stayed in `disowned` for good.
    let gate = FakeConnector.Gate()
    let connector = FakeConnector { _ in .succeedAfterThenEnd(gate, .resetWithQueriesOutstanding) }
    let p = await forgetWhileConnecting(connector, gate)
    #expect(p.table.servers["192.0.2.7"] == nil)
    #expect(Self.leavesNoBookkeeping(p))
  }

  @Test func aProbeSendsNothingOverASessionOfAServerForgottenWhileItConnected() async {
    // A real session reads active until its close runs on the engine thread: the probe sent its
    // query over the closing session and recorded it, bringing the forgotten server back.
    let gate = FakeConnector.Gate()
    let connector = FakeConnector { _ in .succeedAfter(gate) }
    connector.closeLater.withLock { $0 = true }
    let p = await forgetWhileConnecting(connector, gate)
    let session = connector.sessions.withLock { $0["192.0.2.7"] }
    #expect(session?.closeRequested.withLock { $0 } == true)
    #expect(session?.sent.withLock { $0 } == 0)
    #expect(p.table.servers["192.0.2.7"] == nil)
  }

  @Test func aServerForgottenWithAnOpenSessionStaysForgottenWhenTheSessionCloses() async throws {
    let (p, _, session) = try await establishedSession()
    #expect(p.forget("192.0.2.7"))
    #expect(session.alive.withLock { $0 } == false)
    // The session's clean close, reported after the forget, brought the record back.
    #expect(p.table.servers["192.0.2.7"] == nil)
  }

  @Test func aConnectionThatComesUpDuringShutdownIsClosedAndRemembered() async {
    let gate = FakeConnector.Gate()
    let connector = FakeConnector { _ in .succeedAfter(gate) }
    let p = policy(connector, FakeDo53())
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    p.closeAll()
    gate.open()
    await p.waitForProbes(upTo: 30)
    let session = connector.sessions.withLock { $0["192.0.2.7"] }
    #expect(session?.alive.withLock { $0 } == false, "a session set up during shutdown was left open")
    // What the handshake showed is kept for the state file: DoT works there.
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .goodIdle)
    #expect(p.state.withLock { $0.slots.isEmpty })
  }

  @Test func aSessionClosedCleanlyBeforeItsHandshakeIsRecordedLeavesTheServerGoodIdle() async {
    let connector = FakeConnector { _ in .succeedThenEnd(.cleanClose) }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    await firstQueryProbes(p)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .goodIdle)
    #expect(p.table.servers["192.0.2.7"]?.history.map(\.kind) == [.connecting, .established, .closed])
    #expect(p.state.withLock { $0.endedBeforeRecorded.isEmpty })
  }

  @Test func cleanCloseKeepsServerGoodAndReconnectsWithoutCleartext() async {
    let connector = FakeConnector { _ in .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    await firstQueryProbes(p)
    connector.sessions.withLock { $0["192.0.2.7"] }?.close()
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .goodIdle)
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(r.legs.map(\.transport) == [.dot])
    #expect(r.legs.first?.reason == "DoT: known good, reconnecting")
    #expect(do53.count == 1)
    #expect(connector.attempts.withLock { $0.count } == 2)
  }

  @Test func failedReconnectToAKnownGoodServerFallsBackToDo53() async {
    let fail = Mutex(false)
    let connector = FakeConnector { _ in fail.withLock { $0 } ? .fail(.tlsAlert("handshake failure")) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    await firstQueryProbes(p)
    connector.sessions.withLock { $0["192.0.2.7"] }?.close()
    fail.withLock { $0 = true }
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(r.response != nil)
    #expect(r.legs.map(\.transport) == [.do53UDP])  // OE-28
    let reason = r.legs.first?.reason ?? ""
    #expect(reason.contains("TLS alert"))
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).failures["tls-alert"] == 1)
  }

  @Test func aReconnectionThatOutlastsTheResolutionsBudgetEndsAsATimeoutWithoutCleartext() async {
    let slow = Mutex(false)
    let connector = FakeConnector { _ in slow.withLock { $0 } ? .slow(.seconds(20)) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53, timeout: 4)
    await firstQueryProbes(p)
    connector.sessions.withLock { $0["192.0.2.7"] }?.close()
    slow.withLock { $0 = true }
    var limited = context
    limited.budget = 0.3
    let clock = ContinuousClock()
    let start = clock.now
    let r = await p.exchange(query, server: server, context: limited, timeout: .seconds(1))
    let elapsed = clock.now - start
    // The query waited on the known-good server's reconnection only as long as the resolution
    // had; then it is a timeout (the resolution moves on), not a 20 s wait and a cleartext query.
    #expect(r.response == nil)
    #expect(r.legs.map(\.transport) == [.dot])
    #expect(r.legs.first?.error == .timeout)
    // The wait is what was left of the 0.3 s budget when the query got to it: 300 ms, or a little
    // less on a loaded machine (CI saw 299), never the 2,000 ms of two timeouts.
    let waited = r.legs.first?.reason.flatMap { Self.waitedMs($0, for: "its connection to come up") }
    #expect(waited.map { (150...300).contains($0) } == true, "\(r.legs.first?.reason ?? "no reason")")
    #expect(r.cutShort)
    #expect(do53.count == 1)
    #expect(elapsed < .seconds(10), "answered after \(elapsed)")
    // With time to spare, a query waits two of its timeouts (a handshake is two round trips),
    // so the resolution can try another server long before the handshake's own 20 s are up.
    limited.budget = 10
    let next = await p.exchange(query, server: server, context: limited, timeout: .milliseconds(200))
    #expect(next.legs.map(\.transport) == [.dot])
    #expect(next.legs.first?.reason?.contains("timed out after 400 ms") == true)
    #expect(!next.cutShort, "two whole timeouts: the server's slowness, not the resolution's deadline")
    #expect(do53.count == 1)
    #expect(connector.attempts.withLock { $0.count } == 2)  // both joined the one pending attempt
  }

  @Test func theDo53FallbackGetsOnlyWhatIsLeftOfTheBudget() async {
    let failing = Mutex(false)
    let connector = FakeConnector { _ in failing.withLock { $0 } ? .fail(.refused) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53, timeout: 4)
    await firstQueryProbes(p)
    connector.sessions.withLock { $0["192.0.2.7"] }?.close()
    failing.withLock { $0 = true }
    var limited = context
    limited.budget = 5
    // A budget shorter than the exchange's timeout (as when a resolution is near its deadline),
    // yet long enough that the refused connection is seen failing even on a loaded machine.
    let r = await p.exchange(query, server: server, context: limited, timeout: .seconds(10))
    // OE-28: the failed reconnection moves the query to Do53, within the 5 s the resolution had
    // left, not with a fresh 10 s.
    #expect(r.legs.map(\.transport) == [.do53UDP])
    let fallback = do53.limits.withLock { $0.last }
    #expect(fallback.map { $0.timeout <= .seconds(5) } == true, "\(String(describing: fallback))")
    #expect(fallback.map { ($0.budget ?? 99) <= 5 } == true)
  }

  @Test func timeoutsCutShortByTheResolutionsDeadlineDoNotFailTheSession() async throws {
    let (p, do53, session) = try await establishedSession()
    session.delay.withLock { $0 = .seconds(2) }
    var limited = context
    limited.budget = 0.3
    // More budget-cut timeouts than the threshold that fails a transport (§6 gap 4): each says
    // only that the resolution ran out of time, not that the server did not answer in 1 s.
    for _ in 0..<(p.settings.maxConsecutiveQueryTimeouts + 1) {
      let r = await p.exchange(query, server: server, context: limited, timeout: .seconds(1))
      #expect(r.response == nil && r.legs.map(\.transport) == [.dot])
      #expect(r.cutShort, "the resolution would blame the server for its own deadline")
    }
    #expect(session.isActive)
    #expect(do53.count == 1)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
  }

  /// A query waits on a session that the server's keepalive TIMEOUT of 0 (RFC 7828) takes out of
  /// use meanwhile, and times out: a failed query for the server (OE-37), not a lost session whose
  /// queries go to Do53 in cleartext (OE-30). The next query reconnects over DoT.
  @Test func aTimeoutOnASessionTakenOutOfUseIsAFailedQueryNotCleartext() async throws {
    let (p, do53, session) = try await establishedSession()
    session.delay.withLock { $0 = .seconds(2) }
    let before = session.sent.withLock { $0 }
    let waiting = Task { await p.exchange(query, server: server, context: context, timeout: .milliseconds(300)) }
    while session.sent.withLock({ $0 }) == before { try await Task.sleep(for: .milliseconds(5)) }
    session.drain()
    let r = await waiting.value
    #expect(r.response == nil)
    #expect(r.legs.map(\.transport) == [.dot], "\(r.legs)")
    #expect(r.legs.first?.error == .timeout)
    #expect(do53.count == 1, "the timed-out query went to Do53")
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .goodIdle)
    let next = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(next.response != nil && next.legs.map(\.transport) == [.dot])
    #expect(next.legs.first?.reason == "DoT: known good, reconnecting")
  }

  /// Timeouts on a DoT session's extra connections (`DoTLanes`), more in a row than fail a
  /// transport (§6 gap 4): each is a failed query, none counts towards damping DoT, none goes
  /// to Do53, and the session stays established.
  @Test func laneTimeoutsNeverDampTheSessionNorGoToDo53() async throws {
    let (p, do53, session) = try await establishedSession()
    session.delay.withLock { $0 = .seconds(2) }
    session.timeoutError.withLock { $0 = .laneTimeout }
    for _ in 0..<(p.settings.maxConsecutiveQueryTimeouts + 1) {
      let r = await p.exchange(query, server: server, context: context, timeout: .milliseconds(200))
      #expect(r.response == nil && r.legs.map(\.transport) == [.dot], "\(r.legs)")
      #expect(r.legs.first?.error == .laneTimeout)
      #expect(!r.cutShort)
    }
    #expect(do53.count == 1, "a lane timeout went to Do53")
    #expect(session.isActive, "lane timeouts closed the session")
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
  }

  /// A query waits on an extra DoT connection while the session's first connection ends (its
  /// server reset it), then times out there: a failed query, not the lost session's query that
  /// OE-30 re-sends over Do53 (that one ends with `.closed`).
  @Test func aLaneTimeoutAfterTheFirstConnectionEndedIsNotSentOverDo53() async throws {
    let (p, do53, session) = try await establishedSession()
    session.delay.withLock { $0 = .seconds(2) }
    session.timeoutError.withLock { $0 = .laneTimeout }
    let before = session.sent.withLock { $0 }
    let waiting = Task { await p.exchange(query, server: server, context: context, timeout: .milliseconds(300)) }
    while session.sent.withLock({ $0 }) == before { try await Task.sleep(for: .milliseconds(5)) }
    session.end(.resetWithQueriesOutstanding)
    let r = await waiting.value
    #expect(r.response == nil)
    #expect(r.legs.map(\.transport) == [.dot], "\(r.legs)")
    #expect(r.legs.first?.error == .laneTimeout)
    #expect(do53.count == 1, "the lane's timed-out query went to Do53")
  }

  /// Two resolutions need the same query at once: the one that sent it has 0.8 s left, the one
  /// that joined it 5 s. The server answers in 1.2 s. The first gets a timeout its own deadline
  /// caused; the second must not take that for the server's answer: it asks again and gets it.
  /// (The joiner's own timeout, 4 s, leaves its second query room on a loaded machine: with 2 s
  /// it ran out under ASan at times and the query went a third time.)
  @Test func aJoinerWithMoreTimeAsksAgainWhenTheSharedQueryWasCutShort() async throws {
    let (p, do53, session) = try await establishedSession(timeout: 4)
    let sentBefore = session.sent.withLock { $0 }
    session.delay.withLock { $0 = .milliseconds(1200) }
    var short = context
    short.budget = 0.8
    var long = context
    long.budget = 5
    let q = query
    let target = server
    let owner = Task { await p.exchange(q, server: target, context: short, timeout: .seconds(2)) }
    while session.sent.withLock({ $0 }) == sentBefore { try await Task.sleep(for: .milliseconds(5)) }
    let joiner = await p.exchange(query, server: server, context: long, timeout: .seconds(4))
    let first = await owner.value
    #expect(first.response == nil && first.cutShort)
    #expect(joiner.response?.answers.count == 1, "the joiner took the other resolution's cut-short timeout")
    #expect(!joiner.cutShort)
    #expect(session.sent.withLock { $0 } == sentBefore + 2)
    #expect(p.coalescedQueries == 0, "it sent a query of its own: not coalesced")
    #expect(do53.count == 1, "no cleartext: only the first query's")
  }

  @Test func stateSurvivesASaveAndLoad() async throws {
    let (p, _, session) = try await establishedSession()
    // The server's keepalive, as its last answer over DoT gave it, is kept with the state.
    session.keepalive.withLock { $0 = 25 }
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    let doc = StateFile.document(p.table, now: 1_000)
    let data = StateFile.encode(doc)
    let path = "/tmp/sotto-state-test-\(UInt32.random(in: 0...UInt32.max)).json"
    try StateFile.save(doc, path: path)
    let loaded = try #require(try StateFile.load(path: path))
    let records = StateFile.records(loaded)
    let restored = EncryptionTable(settings: EncryptionSettings(), servers: records)
    // Restart: the established session is gone, the server is still known good (no cleartext).
    #expect(restored.phase("192.0.2.7", .dot, now: 1_000) == .goodIdle)
    #expect(restored.cleartextSuppressed("192.0.2.7", now: 1_000))
    #expect(records.first?.nsNames == ["ns.example.test."])
    #expect(records.first?.transports[.dot]?.keepalive == 2.5)
    let text = String(decoding: data, as: UTF8.self)
    #expect(text.contains("\"version\" : 1") && text.contains("\"keepalive\" : 2.5"))
    // A file written before the field existed still loads, without a keepalive.
    let older = text.replacingOccurrences(of: "\"keepalive\" : 2.5,", with: "")
      .replacingOccurrences(of: ",\n      \"keepalive\" : 2.5", with: "")
    #expect(!older.contains("keepalive"))
    try older.write(toFile: path, atomically: true, encoding: .utf8)
    let reloaded = try #require(try StateFile.load(path: path))
    #expect(StateFile.records(reloaded).first?.transports[.dot]?.keepalive == nil)
    #expect(StateFile.records(reloaded).first?.transports[.dot]?.status == .success)
    unlink(path)
  }

  @Test func corruptStateFileIsMovedAsideAndReported() throws {
    let path = "/tmp/sotto-state-corrupt-\(UInt32.random(in: 0...UInt32.max)).json"
    try "{ not json".write(toFile: path, atomically: true, encoding: .utf8)
    var backup: String?
    do {
      _ = try StateFile.load(path: path)
      Issue.record("corrupt file loaded")
    } catch {
      if case .corrupt(_, _, let b) = error { backup = b }
      #expect("\(error)".contains("corrupt"))
    }
    let moved = try #require(backup)
    #expect(FileManager.default.fileExists(atPath: moved))
    #expect(!FileManager.default.fileExists(atPath: path))
    unlink(moved)
  }
}

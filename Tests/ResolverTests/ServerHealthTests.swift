import Testing

@testable import Resolver

/// A server held as unresponsive (R-24, RFC 9520 §3.2): after silent timeouts in a row over
/// 2 s, later resolutions leave it out but for a probe at doubling gaps, and a reply ends it.
@Suite struct ServerHealthTests {
  let rule = ServerHealth.Rule(timeouts: 3, minSilence: 2, firstProbeGap: 1, maxProbeGap: 30)

  // `#expect` cannot call a mutating method on a local: these do it outside.
  func timeout(_ h: inout ServerHealth, sent: Double, at now: Double, _ kind: ServerHealth.Kind = .a) -> Bool {
    h.timeout(sentAt: sent, at: now, rule: rule, kind: kind)
  }
  func claim(_ h: inout ServerHealth, at now: Double, _ kind: ServerHealth.Kind = .a, busy: Double = 0) -> Bool {
    h.claimProbe(at: now, rule: rule, kind: kind, busy: busy) == .taken
  }
  func reply(_ h: inout ServerHealth, at now: Double, _ kind: ServerHealth.Kind = .a, rttMs: Double? = nil) -> Bool {
    rttMs.map { h.measured(rttMs: $0, at: now, kind: kind) } ?? h.reply(at: now, kind: kind)
  }

  /// A server whose A queries sent at 0, 0.8 and 1.6 s timed out 0.8 s later each.
  func silentSince0() -> ServerHealth {
    var h = ServerHealth()
    let held = [(0.0, 0.8), (0.8, 1.6), (1.6, 2.4)].map { timeout(&h, sent: $0.0, at: $0.1) }
    #expect(held == [false, false, true])
    return h
  }

  @Test func threeSilentTimeoutsOverTwoSecondsStartAHold() {
    let h = silentSince0()
    #expect(h[.a].hold == ServerHealth.Hold(since: 2.4, nextProbe: 3.4, interval: 1))
    #expect(h[.aaaa].hold == nil && h[.other].hold == nil && h.nextProbe == 3.4)
    #expect(h.timeouts == 3)
    #expect(h.srtt == 1_600)  // 200·2, ·2, ·2
  }

  /// A server that drops HTTPS queries (RFC 8906 §3.1.4) is held for HTTPS and SVCB only: its MX,
  /// TXT and other queries still go to it.
  @Test func droppedHTTPSQueriesHoldNeitherMXNorTXT() {
    #expect(ServerHealth.Kind(.https) == .svcb && ServerHealth.Kind(.svcb) == .svcb)
    #expect(ServerHealth.Kind(.mx) == .other && ServerHealth.Kind(.txt) == .other)
    var h = ServerHealth()
    let held = [(0.0, 0.8), (0.8, 1.6), (1.6, 2.4)].map { timeout(&h, sent: $0.0, at: $0.1, .svcb) }
    #expect(held == [false, false, true])
    #expect(h.admission(runStarted: 2.5, at: 2.5, kind: ServerHealth.Kind(.https)) != .free)
    #expect(h.admission(runStarted: 2.5, at: 2.5, kind: ServerHealth.Kind(.mx)) == .free)
    #expect(h.admission(runStarted: 2.5, at: 2.5, kind: ServerHealth.Kind(.txt)) == .free)
  }

  @Test func threeTimeoutsWithinTwoSecondsDoNotHoldButAFourthLaterDoes() {
    var h = ServerHealth()
    let early = [0.0, 0.1, 0.2].map { timeout(&h, sent: $0, at: $0 + 0.8) }
    #expect(early == [false, false, false] && h.nextProbe == nil)
    #expect(timeout(&h, sent: 2.5, at: 3.3))
  }

  @Test func aTimeoutOfAQuerySentBeforeTheLastReplyDoesNotCount() {
    // A lossy but live server: three queries sent at 0.0-0.2 are lost, one sent at 0.3 is
    // answered at 0.31; their timeouts come later but say nothing about the server now.
    var h = ServerHealth()
    _ = h.measured(rttMs: 10, at: 0.31, kind: .a)
    let held = [0.0, 0.1, 0.2].map { timeout(&h, sent: $0, at: $0 + 3) }
    #expect(held == [false, false, false])
    #expect(h[.a].streak == 0 && h.nextProbe == nil && h.timeouts == 3)
  }

  @Test func aReplyEndsTheStreakAndTheHoldOfItsKind() {
    var h = ServerHealth()
    _ = timeout(&h, sent: 0, at: 0.8)
    _ = timeout(&h, sent: 0.8, at: 1.6)
    #expect(!reply(&h, at: 1.7))
    #expect(!timeout(&h, sent: 1.8, at: 2.6) && h[.a].streak == 1)  // a new streak of one
    var held = silentSince0()
    #expect(!reply(&held, at: 10, .other))  // an answer to another kind ends nothing
    #expect(held.nextProbe != nil)
    #expect(reply(&held, at: 10, rttMs: 5))
    #expect(held.nextProbe == nil && held[.a].streak == 0)
    #expect(!reply(&held, at: 11))  // no hold left to end
  }

  @Test func laterResolutionsAreLeftOutButForOneProbeAtDoublingGaps() {
    var h = silentSince0()  // held at 2.4, first probe due at 3.4
    #expect(h.admission(runStarted: 0, at: 2.5, kind: .a) == .free)  // started before the hold
    #expect(h.admission(runStarted: 2.5, at: 2.5, kind: .aaaa) == .free)  // another kind
    #expect(h.admission(runStarted: 2.5, at: 3.3, kind: .a) == .held)
    // A due probe not taken stays due.
    #expect(h.admission(runStarted: 3.5, at: 3.5, kind: .a) == .probeDue)
    #expect(h.admission(runStarted: 3.5, at: 9.0, kind: .a) == .probeDue)
    // Taken at 10: then gaps of 2, 4, 8, 16, 30, 30.
    var at = 10.0
    for gap in [2.0, 4, 8, 16, 30, 30] {
      #expect(claim(&h, at: at), "probe due at \(at)")
      #expect(!claim(&h, at: at), "a second probe at \(at)")
      #expect(h.admission(runStarted: at, at: at + gap - 0.01, kind: .a) == .held)
      at += gap
    }
    // The server still silent: its probe's timeout neither starts a second hold nor moves the probes.
    let before = h[.a].hold
    #expect(!timeout(&h, sent: at, at: at + 3))
    #expect(h[.a].hold == before)
    #expect(h.nextProbe == before?.nextProbe)
  }

  /// A probe that may take 3 s (its timeout) moves the next one at least that far: two probes
  /// to one server are never in flight at once, though the gap would be 2 s.
  @Test func theNextProbeWaitsForThisOnesTimeout() {
    var h = silentSince0()
    #expect(claim(&h, at: 10, busy: 3))
    #expect(h.admission(runStarted: 12.5, at: 12.5, kind: .a) == .held)
    #expect(h.admission(runStarted: 13, at: 13, kind: .a) == .probeDue)
  }

  @Test func zeroTimeoutsNeverHolds() {
    var h = ServerHealth()
    let off = ServerHealth.Rule(timeouts: 0)
    for t in stride(from: 0.0, to: 60, by: 1) { _ = h.timeout(sentAt: t, at: t + 3, rule: off, kind: .a) }
    #expect(h.nextProbe == nil && h.admission(runStarted: 100, at: 100, kind: .a) == .free)
  }

  /// R-39's backoff: every timeout doubles the srtt the retransmit timeout comes from (up to
  /// 3 s), and the next measured reply ends it, so a lossy 40 ms server is asked again with a
  /// 200 ms timeout, not 3 s (the netem test's lookups ran out of their deadline so).
  @Test func aMeasuredReplyEndsTheTimeoutsBackoff() {
    let selection = ServerSelection(unknownTimeoutMs: 300, rule: rule, time: FakeTimeSource(0))
    #expect(selection.timeoutMs(server: "lossy") == 300)
    selection.record(server: "lossy", rttMs: 40)
    #expect(selection.timeoutMs(server: "lossy") == 200)
    var timeouts: [Double] = []
    for _ in 0..<5 {
      selection.recordTimeout(server: "lossy", sentAt: 0)
      timeouts.append(selection.timeoutMs(server: "lossy"))
    }
    #expect(timeouts == [400, 800, 1_600, 3_000, 3_000])
    #expect(selection.smoothedRTT(server: "lossy") == 3_200)
    selection.record(server: "lossy", rttMs: 50)
    #expect(selection.smoothedRTT(server: "lossy") == 43)  // 0.7·40 + 0.3·50: the timeouts are no sample
    #expect(selection.timeoutMs(server: "lossy") == 200)
    // A server never measured backs off from 200 ms, to 10 s at most.
    for _ in 0..<10 { selection.recordTimeout(server: "silent", sentAt: 0) }
    #expect(selection.smoothedRTT(server: "silent") == 10_000 && selection.timeoutMs(server: "silent") == 3_000)
  }

  /// Through `ServerSelection`, as a resolution asks: the held server is left out of later
  /// resolutions' candidates, the live one stays, a due probe is listed apart from the free servers, and
  /// a reply brings the held one back.
  @Test func selectionLeavesHeldServersOutUntilTheyReply() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: rule, time: clock)
    #expect(selection.admitted(["dead", "live"], key: { $0 }, runStarted: 0, kind: .a).free == ["dead", "live"])
    for sent in [0.0, 0.8, 1.6] {
      clock.advance(sent + 0.8 - clock.now())
      selection.recordTimeout(server: "dead", sentAt: sent)
    }
    #expect(selection.heldServers == 1)
    let held = selection.admitted(["dead", "live"], key: { $0 }, runStarted: 2.5, kind: .a)
    #expect(held.free == ["live"] && held.probes.isEmpty && held.heldBack == 1)
    #expect(selection.admitted(["dead"], key: { $0 }, runStarted: 1.0, kind: .a).free == ["dead"])
    #expect(abs((selection.probeIn(server: "dead") ?? 0) - 1.0) < 1e-9)
    #expect(selection.probeIn(server: "live") == nil)
    clock.advance(3.45 - clock.now())
    let due = selection.admitted(["dead", "live"], key: { $0 }, runStarted: 3.45, kind: .a)
    #expect(due.free == ["live"] && due.probes == ["dead"] && due.heldBack == 0)
    #expect(selection.claimProbe(server: "dead", kind: .a) == .taken)
    #expect(selection.claimProbe(server: "dead", kind: .a) == .notDue)
    #expect(selection.admitted(["dead"], key: { $0 }, runStarted: 3.45, kind: .a).heldBack == 1)
    clock.advance(0.1)
    #expect(selection.record(server: "dead", rttMs: 4))
    #expect(selection.heldServers == 0 && selection.probeIn(server: "dead") == nil)
    #expect(selection.admitted(["dead", "live"], key: { $0 }, runStarted: 3.6, kind: .a).free == ["dead", "live"])
  }

  /// A held server that answers its probe REFUSED (or SERVFAIL, or lame) is alive: the hold ends,
  /// though the reply is no answer and its srtt is penalised rather than measured.
  @Test func aHeldServersNonAnswerEndsItsHoldButIsPenalised() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: rule, time: clock)
    for sent in [0.0, 0.8, 1.6] {
      clock.advance(sent + 0.8 - clock.now())
      selection.recordTimeout(server: "dead", sentAt: sent)
    }
    #expect(selection.heldServers == 1)
    clock.advance(1)
    let before = selection.smoothedRTT(server: "dead") ?? 0
    #expect(selection.penalise(server: "dead", replied: .a))
    #expect(selection.heldServers == 0)
    #expect((selection.smoothedRTT(server: "dead") ?? 0) > before)
    #expect(!selection.penalise(server: "dead"))  // no reply (a refused port): no hold to end
  }
}

import Testing

@testable import Resolver

/// A server held as unresponsive (R-24, RFC 9520 §3.2): after silent timeouts in a row over
/// 2 s, later resolutions leave it out but for one probe at doubling gaps, and a reply ends it.
@Suite struct ServerHealthTests {
  let rule = ServerHealth.Rule(timeouts: 3, minSilence: 2, firstProbeGap: 1, maxProbeGap: 30)

  /// A server that timed out for queries sent at 0, 0.8 and 1.6 s (each timing out 0.8 s later).
  func silentSince0() -> ServerHealth {
    var h = ServerHealth()
    do {
      let r = h.timeout(sentAt: 0, at: 0.8, rule: rule)
      #expect(!r)
    }
    do {
      let r = h.timeout(sentAt: 0.8, at: 1.6, rule: rule)
      #expect(!r)
    }
    do {
      let r = h.timeout(sentAt: 1.6, at: 2.4, rule: rule)
      #expect(r)
    }
    return h
  }

  @Test func threeSilentTimeoutsOverTwoSecondsStartAHold() {
    let h = silentSince0()
    #expect(h.hold == ServerHealth.Hold(since: 2.4, nextProbe: 3.4, interval: 1))
    #expect(h.timeouts == 3)
    #expect(h.srtt == 1_600)  // 200·2, ·2, ·2
  }

  @Test func threeTimeoutsWithinTwoSecondsDoNotHoldButAFourthLaterDoes() {
    var h = ServerHealth()
    for t in [0.0, 0.1, 0.2] {
      let r = h.timeout(sentAt: t, at: t + 0.8, rule: rule)
      #expect(!r)
    }
    #expect(h.hold == nil)
    do {
      let r = h.timeout(sentAt: 2.5, at: 3.3, rule: rule)
      #expect(r)
    }
  }

  @Test func aTimeoutOfAQuerySentBeforeTheLastReplyDoesNotCount() {
    // A lossy but live server: three queries sent at 0.0-0.2 are lost, one sent at 0.3 is
    // answered at 0.31; their timeouts come later but say nothing about the server now.
    var h = ServerHealth()
    _ = h.measured(rttMs: 10, at: 0.31)
    for t in [0.0, 0.1, 0.2] {
      let r = h.timeout(sentAt: t, at: t + 3, rule: rule)
      #expect(!r)
    }
    #expect(h.silentStreak == 0 && h.hold == nil && h.timeouts == 3)
  }

  @Test func aReplyEndsTheStreakAndTheHold() {
    var h = ServerHealth()
    _ = h.timeout(sentAt: 0, at: 0.8, rule: rule)
    _ = h.timeout(sentAt: 0.8, at: 1.6, rule: rule)
    do {
      let r = h.reply(at: 1.7)
      #expect(!r)
    }
    let newStreak = h.timeout(sentAt: 1.8, at: 2.6, rule: rule)
    #expect(!newStreak && h.silentStreak == 1)  // a new streak of one
    var held = silentSince0()
    do {
      let r = held.measured(rttMs: 5, at: 10)
      #expect(r)
    }
    #expect(held.hold == nil && held.silentStreak == 0)
    let endedAgain = held.reply(at: 11)
    #expect(!endedAgain)  // no hold left to end
  }

  @Test func laterResolutionsAreLeftOutButForOneProbeAtDoublingGaps() {
    var h = silentSince0()  // held at 2.4, first probe at 3.4
    let earlier = h.admits(runStarted: 0, at: 2.5, rule: rule)
    #expect(earlier)  // started before the hold: goes on
    do {
      let r = h.admits(runStarted: 2.5, at: 2.5, rule: rule)
      #expect(!r)
    }
    do {
      let r = h.admits(runStarted: 3.0, at: 3.3, rule: rule)
      #expect(!r)
    }
    // The probes: at 3.4, then gaps of 2, 4, 8, 16, 30, 30.
    var at = 3.4
    for gap in [2.0, 4, 8, 16, 30, 30] {
      do {
        let r = h.admits(runStarted: at, at: at, rule: rule)
        #expect(r, "probe due at \(at)")
      }
      do {
        let r = h.admits(runStarted: at, at: at, rule: rule)
        #expect(!r, "a second query at \(at)")
      }
      do {
        let r = h.admits(runStarted: at, at: at + gap - 0.01, rule: rule)
        #expect(!r)
      }
      at += gap
    }
    // The server still silent: its probe's timeout neither starts a second hold nor moves the probes.
    let before = h.hold
    do {
      let r = h.timeout(sentAt: at, at: at + 3, rule: rule)
      #expect(!r)
    }
    #expect(h.hold == before)
  }

  @Test func zeroTimeoutsNeverHolds() {
    var h = ServerHealth()
    let off = ServerHealth.Rule(timeouts: 0)
    for t in stride(from: 0.0, to: 60, by: 1) {
      let r = h.timeout(sentAt: t, at: t + 3, rule: off)
      #expect(!r)
    }
    let admitted = h.admits(runStarted: 100, at: 100, rule: off)
    #expect(h.hold == nil && admitted)
  }

  /// Through `ServerSelection`, as a resolution asks: the held server is left out of later
  /// resolutions' candidates, the live one stays, and a reply brings the held one back.
  @Test func selectionLeavesHeldServersOutUntilTheyReply() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: rule, time: clock)
    #expect(selection.admitted(["dead", "live"], key: { $0 }, runStarted: 0).admitted == ["dead", "live"])
    for sent in [0.0, 0.8, 1.6] {
      clock.advance(sent + 0.8 - clock.now())
      selection.recordTimeout(server: "dead", sentAt: sent)
    }
    #expect(selection.heldServers == 1)
    let (admitted, heldBack) = selection.admitted(["dead", "live"], key: { $0 }, runStarted: 2.5)
    #expect(admitted == ["live"] && heldBack == 1)
    #expect(selection.admitted(["dead"], key: { $0 }, runStarted: 1.0).admitted == ["dead"])
    #expect(abs((selection.probeIn(server: "dead") ?? 0) - 1.0) < 1e-9)
    #expect(selection.probeIn(server: "live") == nil)
    clock.advance(3.45 - clock.now())
    #expect(selection.admitted(["dead"], key: { $0 }, runStarted: 3.45).admitted == ["dead"])  // the probe
    #expect(selection.admitted(["dead"], key: { $0 }, runStarted: 3.45).admitted.isEmpty)
    #expect(selection.heldBackQueries == 2)
    clock.advance(3.55 - clock.now())
    #expect(selection.record(server: "dead", rttMs: 4))
    #expect(selection.heldServers == 0 && selection.probeIn(server: "dead") == nil)
    #expect(selection.admitted(["dead", "live"], key: { $0 }, runStarted: 3.6).admitted == ["dead", "live"])
  }
}

import Synchronization
import Testing

@testable import Resolver

/// The order in which a resolution tries a zone's servers: measured speed first, ties and
/// near-ties shuffled, encryption preferred among comparable servers.
@Suite struct ServerSelectionTests {
  /// A selection that has measured each server once at the given RTT (ms).
  func measured(_ rtts: KeyValuePairs<String, Double>) -> ServerSelection {
    let selection = ServerSelection()
    for (server, rtt) in rtts { selection.record(server: server, rttMs: rtt) }
    return selection
  }

  @Test func noOrOneCandidateComesBackAsItIs() {
    let selection = ServerSelection()
    #expect(selection.order([String](), key: { $0 }).isEmpty)
    #expect(selection.order(["only"], key: { $0 }) == ["only"])
  }

  @Test func aServerMoreThan100msSlowerIsTriedLastAndTheNearOnesTakeTurns() {
    let selection = measured(["fast1": 2, "fast2": 40, "slow": 400, "slower": 900])
    var firsts = Set<String>()
    for _ in 0..<200 {
      let order = selection.order(["slower", "slow", "fast1", "fast2"], key: { $0 })
      #expect(order.count == 4)
      // Beyond 100 ms of the best: after the near ones, in srtt order.
      #expect(Array(order.suffix(2)) == ["slow", "slower"])
      firsts.insert(order[0])
    }
    #expect(firsts == ["fast1", "fast2"])
  }

  @Test func aComparableEncryptedServerGoesFirstButAFarOneDoesNot() {
    let selection = measured(["a": 5, "b": 7, "c": 9, "far": 300])
    for _ in 0..<100 {
      let order = selection.order(["a", "b", "c"], key: { $0 }, prefer: { $0 == "c" }, margin: 10)
      #expect(order.first == "c")
      #expect(Set(order) == ["a", "b", "c"])
      let far = selection.order(["a", "far"], key: { $0 }, prefer: { $0 == "far" }, margin: 10)
      #expect(far == ["a", "far"])
    }
  }

  /// `rank` says whether a zone has a server more than 100 ms slower than its best: only then
  /// are re-tests looked for and servers aged (it keeps that work off most zone steps).
  @Test func rankSaysWhetherAServerIsOutOfTheBestsReach() {
    let selection = measured(["a": 10, "b": 109, "c": 111])
    func someSlower(_ zone: [String]) -> Bool {
      selection.rank(zone, key: { $0 }, prefer: { _ in false }, margin: 0).someSlower
    }
    #expect(!someSlower(["a", "b"]) && someSlower(["a", "c"]) && someSlower(["c", "b", "a"]))
    #expect(!someSlower(["c"]) && !someSlower([]))
    #expect(!someSlower(["b", "c"]))
  }

  /// a server more than 100 ms slower than the zone's best ages 2% a second while left
  /// unasked; once its aged srtt is within reach, one re-test is taken (and its aging starts
  /// over), then none for 30 s; a server that may not age (a re-test would go in cleartext
  /// beside encryption) starts over instead.
  @Test func aSlowerServerLeftUnaskedIsDueOneReTestAtATime() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(), time: clock)
    selection.record(server: "fast", rttMs: 10)
    selection.record(server: "slow", rttMs: 150)
    let zone = ["slow", "fast"]
    let all = [true, true]
    func unasked(at t: Double, mayAge: Bool = true) {
      clock.advance(t - clock.now())
      selection.leftUnasked([("slow", mayAge)], zone: zone)
    }
    // 150·0.98ⁿ ≤ 110 from n = 16 seconds of answers; a burst within a second ages once.
    for t in [1.0, 1.2, 1.5] { unasked(at: t) }
    for t in stride(from: 2.0, through: 15, by: 1) { unasked(at: t) }
    #expect(selection.takeRetest(zone, key: { $0 }, allowed: all) == nil)
    unasked(at: 16)
    #expect(selection.takeRetest(zone, key: { $0 }, allowed: [false, true]) == nil)  // not allowed
    #expect(selection.takeRetest(zone, key: { $0 }, allowed: all) == "slow")
    #expect(selection.takeRetest(zone, key: { $0 }, allowed: all) == nil)
    #expect(selection.order(zone, key: { $0 }) == ["fast", "slow"])
    // Its re-test lost: aged into reach again 16 s later, re-tested no sooner than 30 s after.
    for t in stride(from: 17.0, through: 32, by: 1) { unasked(at: t) }
    #expect(selection.takeRetest(zone, key: { $0 }, allowed: all) == nil)
    for t in stride(from: 33.0, through: 46, by: 1) { unasked(at: t) }
    #expect(selection.takeRetest(zone, key: { $0 }, allowed: all) == "slow")
    // Fifteen seconds of aging undone by one answer it may not age by.
    for t in stride(from: 47.0, through: 75, by: 1) { unasked(at: t) }
    unasked(at: 76, mayAge: false)
    unasked(at: 77)
    #expect(selection.takeRetest(zone, key: { $0 }, allowed: all) == nil)
  }

  /// A server backed off by its timeouts while another answers is re-tested once it has aged
  /// into reach, and its next measured reply ends the backoff. Aging comes from answers, not
  /// from the clock: an hour without queries changes nothing.
  @Test func aBackedOffServerIsReTestedAndAReplyRestoresIt() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(timeouts: 0), time: clock)
    selection.record(server: "a", rttMs: 20)
    selection.record(server: "b", rttMs: 20)
    for _ in 0..<4 { selection.recordTimeout(server: "b", sentAt: clock.now()) }  // 20 → 1,600 ms
    clock.advance(3_600)
    #expect(selection.takeRetest(["b", "a"], key: { $0 }, allowed: [true, true]) == nil)
    // 1,600·0.98ⁿ ≤ 120 from n = 129 answers of "a" a second apart.
    for _ in 0..<128 {
      clock.advance(1)
      selection.leftUnasked([("b", true)], zone: ["b", "a"])
    }
    #expect(selection.takeRetest(["b", "a"], key: { $0 }, allowed: [true, true]) == nil)
    clock.advance(1)
    selection.leftUnasked([("b", true)], zone: ["b", "a"])
    #expect(selection.takeRetest(["b", "a"], key: { $0 }, allowed: [true, true]) == "b")
    selection.record(server: "b", rttMs: 25)
    #expect(selection.timeoutMs(server: "b") == 200)  // 0.7·20 + 0.3·25 = 21.5: the backoff is over
  }

  /// Inside real resolutions (`ResolutionRun.ask`): test.'s servers answer in 10 and 120 ms; one
  /// name a second. Every answer comes from the fast one; the slow one gets one re-test, beside
  /// a resolution, after five seconds of answers, and no second one within 30 s. Not while the
  /// fast one speaks encryption and the slow one does not: a re-test would show a name in
  /// cleartext.
  @Test(arguments: [false, true])
  func reTestsGoBesideResolutionsAndNeverTradeEncryptionForCleartext(fastEncrypted: Bool) async {
    let lab = UnresponsiveServerTests.Lab()
    lab.rtt.withLock { $0 = ["192.0.2.2": 10, "192.0.2.3": 120] }
    if fastEncrypted { lab.encrypted.withLock { $0 = ["192.0.2.2"] } }
    let r = UnresponsiveServerTests().resolver(lab)
    r.serverSelection.record(server: "192.0.2.2", rttMs: 10)
    r.serverSelection.record(server: "192.0.2.3", rttMs: 120)
    let background = Mutex<[String]>([])
    r.backgroundHops.connect { hops in background.withLock { $0 += hops.map(\.server) } }
    let before = lab.count
    for i in 0..<12 {
      lab.time.advance(1)
      let out = await r.resolve(Question(name: name("n\(i).test."), type: .a))
      #expect(out.rcode == .noError && out.hops.last?.server == "192.0.2.2")
    }
    let expected = fastEncrypted ? [String]() : ["192.0.2.3"]
    try? await Task.sleep(for: .milliseconds(100))  // a re-test's task, if any, has run
    #expect(await eventually { background.withLock { $0 } == expected })
    #expect(lab.sent(since: before).filter { $0 == "192.0.2.3" } == expected)
  }

  /// A lame server (every answer REFUSED) beside one that answers: each re-test of it
  /// gets REFUSED too, which shows it alive but is no measure of a useful server. It must keep
  /// its penalty: measured, its backoff ended and the next resolution asked it first again.
  @Test func aLameServersReTestKeepsItsPenalty() async {
    let lab = UnresponsiveServerTests.Lab()
    lab.rtt.withLock { $0 = ["192.0.2.2": 10, "192.0.2.3": 10] }
    lab.refusing.withLock { $0 = ["192.0.2.3"] }
    let r = UnresponsiveServerTests().resolver(lab)
    r.serverSelection.record(server: "192.0.2.2", rttMs: 10)
    r.serverSelection.record(server: "192.0.2.3", rttMs: 10)
    let background = Mutex<[String]>([])
    r.backgroundHops.connect { hops in background.withLock { $0 += hops.map(\.server) } }
    var foreground = 0
    var i = 0
    // Until the lame server's first re-test has run (its aging takes some 30 answers).
    while background.withLock({ $0.isEmpty }) && i < 200 {
      lab.time.advance(1)
      let out = await r.resolve(Question(name: name("n\(i).test."), type: .a))
      #expect(out.rcode == .noError)
      foreground += out.hops.filter { $0.server == "192.0.2.3" }.count
      i += 1
      try? await Task.sleep(for: .milliseconds(1))  // a re-test's task, if any, runs
    }
    #expect(await eventually { background.withLock { $0 } == ["192.0.2.3"] }, "no re-test in \(i) resolutions")
    try? await Task.sleep(for: .milliseconds(20))
    // Its REFUSED kept it out of reach of the answering server: the next resolutions ask that one.
    for j in 0..<10 {
      lab.time.advance(1)
      let out = await r.resolve(Question(name: name("m\(j).test."), type: .a))
      #expect(out.hops.last?.server == "192.0.2.2")
      #expect(!out.hops.contains { $0.server == "192.0.2.3" }, "asked the lame server again after its re-test")
    }
    #expect(foreground <= 1, "the lame server was asked \(foreground) times before its re-test")
  }
}

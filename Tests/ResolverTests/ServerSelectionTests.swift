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

  /// a server more than 100 ms slower than the one that answers ages 10% a second while
  /// left unasked; once its aged srtt is within reach, one re-test is taken (and its aging starts
  /// over); the order goes by the srtt all along.
  @Test func aSlowerServerLeftUnaskedIsDueOneReTest() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(), time: clock)
    selection.record(server: "fast", rttMs: 10)
    selection.record(server: "slow", rttMs: 150)
    selection.record(server: "near", rttMs: 60)
    let zone = ["slow", "fast", "near"]
    // Two seconds of answers from "fast" (a burst within a second ages once): 150·0.9² = 121.5.
    for t in [1.0, 1.2, 1.5, 2.0] {
      clock.advance(t - clock.now())
      selection.leftUnasked(["slow", "near"], slowerThan: "fast")
      #expect(selection.takeRetest(zone, key: { $0 }) == nil)
    }
    // A third: 109 ms, within reach: one re-test, then none until it has aged again.
    clock.advance(1)
    selection.leftUnasked(["slow", "near"], slowerThan: "fast")
    #expect(selection.takeRetest(zone, key: { $0 }) == "slow")
    #expect(selection.takeRetest(zone, key: { $0 }) == nil)
    #expect(selection.order(zone, key: { $0 }).last == "slow")
    // "near" (within 100 ms) never ages: it takes turns with "fast" anyway.
    for _ in 0..<30 {
      clock.advance(1)
      selection.leftUnasked(["near"], slowerThan: "fast")
    }
    #expect(selection.takeRetest(["near", "fast"], key: { $0 }) == nil)
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
    #expect(selection.takeRetest(["b", "a"], key: { $0 }) == nil)
    // 1,600·0.9ⁿ ≤ 120 from n = 25 answers of "a" a second apart.
    for _ in 0..<24 {
      clock.advance(1)
      selection.leftUnasked(["b"], slowerThan: "a")
    }
    #expect(selection.takeRetest(["b", "a"], key: { $0 }) == nil)
    clock.advance(1)
    selection.leftUnasked(["b"], slowerThan: "a")
    #expect(selection.takeRetest(["b", "a"], key: { $0 }) == "b")
    selection.record(server: "b", rttMs: 25)
    #expect(selection.timeoutMs(server: "b") == 200)  // 0.7·20 + 0.3·25 = 21.5: the backoff is over
  }

  /// Inside real resolutions (`ResolutionRun.ask`): test.'s servers answer in 10 and 150 ms; one
  /// name a second. Every answer comes from the fast one; the slow one gets one re-test, beside
  /// a resolution, after three seconds of answers. Not while the fast one speaks encryption and
  /// the slow one does not: a re-test would show a name in cleartext.
  @Test(arguments: [false, true])
  func reTestsGoBesideResolutionsAndNeverTradeEncryptionForCleartext(fastEncrypted: Bool) async {
    let lab = UnresponsiveServerTests.Lab()
    lab.rtt.withLock { $0 = ["192.0.2.2": 10, "192.0.2.3": 150] }
    if fastEncrypted { lab.encrypted.withLock { $0 = ["192.0.2.2"] } }
    let r = UnresponsiveServerTests().resolver(lab)
    r.serverSelection.record(server: "192.0.2.2", rttMs: 10)
    r.serverSelection.record(server: "192.0.2.3", rttMs: 150)
    let background = Mutex<[String]>([])
    r.backgroundHops.connect { hops in background.withLock { $0 += hops.map(\.server) } }
    let before = lab.count
    for i in 0..<6 {
      lab.time.advance(1)
      let out = await r.resolve(Question(name: name("n\(i).test."), type: .a))
      #expect(out.rcode == .noError && out.hops.last?.server == "192.0.2.2")
    }
    let expected = fastEncrypted ? [String]() : ["192.0.2.3"]
    try? await Task.sleep(for: .milliseconds(100))  // a re-test's task, if any, has run
    #expect(await eventually { background.withLock { $0 } == expected })
    #expect(lab.sent(since: before).filter { $0 == "192.0.2.3" } == expected)
  }
}

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

  /// a server left unused for being slower is re-tested once its srtt, aged since it last
  /// changed, comes within 100 ms of the best; a measurement puts it back where it was.
  @Test func aSlowerServerLeftUnusedIsReTestedAfterAWhile() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(), time: clock)
    selection.record(server: "fast", rttMs: 10)
    selection.record(server: "slow", rttMs: 150)
    func firsts() -> Set<String> {
      Set((0..<100).compactMap { _ in selection.order(["slow", "fast"], key: { $0 }).first })
    }
    #expect(firsts() == ["fast"])
    // 20 s on, "fast" measured again: "slow" aged to 150·2^(-1/3) = 119 ms, still out of reach.
    clock.advance(20)
    selection.record(server: "fast", rttMs: 10)
    #expect(firsts() == ["fast"])
    // 40 s on: 150·2^(-2/3) = 94.5 ms, within 100 ms of the best: the two take turns.
    clock.advance(20)
    selection.record(server: "fast", rttMs: 10)
    #expect(firsts() == ["fast", "slow"])
    // Re-tested (still 150 ms): out of reach again; the srtt it is timed out by is the measured one.
    selection.record(server: "slow", rttMs: 150)
    #expect(firsts() == ["fast"])
    #expect(selection.smoothedRTT(server: "slow") == 150 && selection.timeoutMs(server: "slow") == 300)
  }

  /// A server backed off by its timeouts while another answers is tried again within minutes,
  /// and its next measured reply ends the backoff.
  @Test func aBackedOffServerIsTriedAgainAndAReplyRestoresIt() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(timeouts: 0), time: clock)
    selection.record(server: "a", rttMs: 20)
    selection.record(server: "b", rttMs: 20)
    for _ in 0..<4 { selection.recordTimeout(server: "b", sentAt: clock.now()) }  // 20 → 1,600 ms
    #expect(selection.order(["b", "a"], key: { $0 }) == ["a", "b"])
    clock.advance(200)  // 1,600·2^(-10/3) = 159 ms; "a", answering all along, is at 20
    selection.record(server: "a", rttMs: 20)
    #expect(selection.order(["b", "a"], key: { $0 }) == ["a", "b"])
    clock.advance(60)  // 1,600·2^(-13/3) = 79 ms: within reach
    selection.record(server: "a", rttMs: 20)
    let firsts = Set((0..<100).compactMap { _ in selection.order(["b", "a"], key: { $0 }).first })
    #expect(firsts == ["a", "b"])
    selection.record(server: "b", rttMs: 25)
    #expect(selection.timeoutMs(server: "b") == 200)  // 0.7·20 + 0.3·25 = 21.5: the backoff is over
  }
}

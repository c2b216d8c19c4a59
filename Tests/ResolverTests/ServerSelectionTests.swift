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

  /// a server left unasked for being slower ages 10% a second while its zone's best
  /// answers; once within 100 ms of the best, one resolution takes it for a re-test and the
  /// others keep to the best; a measurement puts it back where it was.
  @Test func aSlowerServerLeftUnaskedIsReTestedOnce() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(), time: clock)
    selection.record(server: "fast", rttMs: 10)
    selection.record(server: "slow", rttMs: 150)
    func firsts(_ n: Int = 100) -> [String] {
      (0..<n).compactMap { _ in selection.order(["slow", "fast"], key: { $0 }).first }
    }
    #expect(Set(firsts()) == ["fast"])
    // Two seconds of answers from "fast": 150·0.9² = 121.5 ms, out of reach; a burst within a
    // second ages it once.
    for t in [1.0, 1.2, 1.5, 2.0] {
      clock.advance(t - clock.now())
      selection.leftUnasked(["slow"])
    }
    #expect(Set(firsts()) == ["fast"])
    // A third: 109 ms, within reach. One resolution takes it; the rest go to "fast".
    clock.advance(1)
    selection.leftUnasked(["slow"])
    #expect(firsts(200).filter { $0 == "slow" }.count == 1)
    // Re-tested (still 150 ms): out of reach again; its timeout is that of its srtt.
    selection.record(server: "slow", rttMs: 150)
    #expect(Set(firsts()) == ["fast"] && selection.timeoutMs(server: "slow") == 300)
  }

  /// A server backed off by its timeouts while another answers is re-tested once it has aged
  /// into reach, and its next measured reply ends the backoff. A zone asked seldom keeps
  /// its order meanwhile: aging comes from answers, not from the clock.
  @Test func aBackedOffServerIsReTestedAndAReplyRestoresIt() {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(timeouts: 0), time: clock)
    selection.record(server: "a", rttMs: 20)
    selection.record(server: "b", rttMs: 20)
    for _ in 0..<4 { selection.recordTimeout(server: "b", sentAt: clock.now()) }  // 20 → 1,600 ms
    clock.advance(3_600)  // an hour without a query: nothing aged
    #expect(Set((0..<100).compactMap { _ in selection.order(["b", "a"], key: { $0 }).first }) == ["a"])
    // 1,600·0.9ⁿ ≤ 120 from n = 25 answers of "a" a second apart.
    for _ in 0..<24 {
      clock.advance(1)
      selection.leftUnasked(["b"])
    }
    #expect(Set((0..<100).compactMap { _ in selection.order(["b", "a"], key: { $0 }).first }) == ["a"])
    clock.advance(1)
    selection.leftUnasked(["b"])
    #expect(
      (0..<200).compactMap { _ in selection.order(["b", "a"], key: { $0 }).first }.filter { $0 == "b" }.count == 1)
    selection.record(server: "b", rttMs: 25)
    #expect(selection.timeoutMs(server: "b") == 200)  // 0.7·20 + 0.3·25 = 21.5: the backoff is over
  }
}

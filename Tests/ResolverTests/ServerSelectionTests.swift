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
}

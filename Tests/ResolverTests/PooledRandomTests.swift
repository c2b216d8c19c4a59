import Testing

@testable import Resolver

/// The pooled generator behind query IDs, DoT message IDs and server order: it must keep
/// producing fresh kernel randomness across refills of its pool, over the whole ID range.
@Suite struct PooledRandomTests {
  @Test func wordsStayDistinctAcrossSeveralRefills() {
    var random = PooledRandom()
    let count = RandomPool.capacity * 3 + 7
    let words = (0..<count).map { _ in random.next() }
    // A refill that did not happen would hand out the zeroed words again.
    #expect(Set(words).count == count)
    #expect(!words.contains(0))
  }

  @Test func concurrentDrawsNeverShareAWord() async {
    let batches = await withTaskGroup(of: [UInt64].self) { group in
      for _ in 0..<8 {
        group.addTask {
          var random = PooledRandom()
          return (0..<400).map { _ in random.next() }
        }
      }
      return await group.reduce(into: [[UInt64]]()) { $0.append($1) }
    }
    let all = batches.flatMap { $0 }
    #expect(all.count == 3_200)
    #expect(Set(all).count == all.count)
  }

  @Test func queryIDsCoverTheWholeRange() {
    var random = PooledRandom()
    let ids = (0..<20_000).map { _ in UInt16.random(in: 0...UInt16.max, using: &random) }
    // 20,000 uniform draws from 65,536 values give about 17,200 distinct ones.
    #expect(Set(ids).count > 16_000)
    #expect(ids.contains { $0 < 1_000 })
    #expect(ids.contains { $0 > 64_500 })
  }

  @Test func serverOrderStillShufflesUnmeasuredServers() {
    let selection = ServerSelection()
    let servers = ["a", "b", "c", "d", "e"]
    var firsts = Set<String>()
    for _ in 0..<200 {
      if let first = selection.order(servers, key: { $0 }).first { firsts.insert(first) }
    }
    #expect(firsts == Set(servers))
  }
}

import Testing

@testable import Resolver

/// In-flight sharing (R-33 upstream, one resolution per question): concurrent callers with one
/// key get the single run's value; a call after the run finished runs again.
@Suite struct CoalescerTests {
  final class Runs: Sendable {
    let count = StateLock(0)
  }

  @Test func concurrentCallersShareOneRunAndLaterCallersRunAgain() async {
    let coalescer = Coalescer<String, Int>()
    let runs = Runs()
    let results = await withTaskGroup(of: (Int, Bool).self) { group in
      for _ in 0..<16 {
        group.addTask {
          let r = await coalescer.run("k") {
            let n = runs.count.withLock { c -> Int in
              c += 1
              return c
            }
            try? await Task.sleep(for: .milliseconds(200))
            return n * 10
          }
          return (r.value, r.joined)
        }
      }
      return await group.reduce(into: []) { $0.append($1) }
    }
    // Every run had one owner; the others got an owner's value (10 for the first run, 20 for a
    // second should a task start only after the first finished on a loaded machine).
    let owners = results.filter { !$0.1 }
    #expect(owners.count == runs.count.withLock { $0 })
    #expect(owners.count < results.count)  // some callers joined instead of running
    #expect(results.allSatisfy { r in owners.contains { $0.0 == r.0 } })
    let again = await coalescer.run("k") { 99 }
    #expect(again.value == 99 && !again.joined)
    let other = await coalescer.run("other") { 7 }
    #expect(other.value == 7)
  }

  @Test func aJoinerWithATimeLimitStopsWaitingAtItWhileTheRunGoesOnForItsOwner() async {
    // An upstream exchange started by one resolution (4 s left) joined by another with 0.3 s
    // left: the second must get its own "out of time", not wait for the first's run, which here
    // lasts until the test ends it.
    let coalescer = Coalescer<String, Int>()
    let started = StateLock(false)
    let release = StateLock(false)
    let owner = Task {
      await coalescer.run("k") {
        started.withLock { $0 = true }
        while !release.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(10)) }
        return 1
      }
    }
    while !started.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
    let limited = await coalescer.run("k", joinLimit: (seconds: 0.3, expired: -1)) { 2 }
    #expect(limited.value == -1 && limited.joined)
    release.withLock { $0 = true }
    let own = await owner.value
    #expect(own.value == 1 && !own.joined)
    // Nothing is left in flight: the next caller runs anew.
    let next = await coalescer.run("k", joinLimit: (seconds: 0.3, expired: -1)) { 4 }
    #expect(next.value == 4 && !next.joined)
  }

  /// Upstream queries share one exchange per server address, port, name (any spelling), type and
  /// class: the key is made from the socket address's octets, not its text.
  @Test func inflightKeysTellServersAndQuestionsApart() throws {
    func key(_ name: String, _ ip: String, _ port: Int = 53, type: RRType = .a) throws -> InflightExchanges.Key {
      var m = Message()
      m.questions = [Question(name: try DNSName(name), type: type)]
      let endpoint = try #require(ServerEndpoint(ip: ip, port: port))
      return try #require(InflightExchanges.Key(m, endpoint))
    }
    let base = try key("WwW.Example.TEST", "192.0.2.1")
    #expect(base == (try key("www.example.test", "192.0.2.1")))
    #expect(base.hashValue == (try key("www.example.test", "192.0.2.1")).hashValue)
    #expect(base != (try key("www.example.test", "192.0.2.2")))
    #expect(base != (try key("www.example.test", "192.0.2.1", 853)))
    #expect(base != (try key("www.example.test", "192.0.2.1", type: .aaaa)))
    #expect(base != (try key("www.example.test", "::ffff:192.0.2.1")))
    let v6 = try key("www.example.test", "2001:db8::1")
    #expect(v6 == (try key("WWW.example.test", "2001:DB8:0:0::1")))
    #expect(v6 != (try key("www.example.test", "2001:db8::2")))
    #expect(v6 != (try key("www.example.test", "2001:db8:0:0:1::1")))
  }
}

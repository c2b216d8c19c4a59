import Foundation
import NIOCore
import Synchronization
import Testing

@testable import Resolver

/// The listener's defences that need no sockets: RFC 8482 ANY answers, the per-client token
/// bucket and the resolution cap's slot accounting.
@Suite struct HostileClientCapTests {
  func key(_ ip: String) -> ClientKey {
    do {
      return ClientKey(try SocketAddress(ipAddress: ip, port: 40_000))
    } catch {
      Issue.record("not an address: \(ip)")
      return .unknown
    }
  }

  // MARK: ANY (RFC 8482)

  @Test func anyIsLookedUpAsAAndAnsweredWithOneHINFO() throws {
    let q = ResponseBuilderTests.query("www.example.com", .any)
    guard case .resolve(let asked) = ResponseBuilder.verdict(for: q) else {
      Issue.record("ANY was not accepted")
      return
    }
    #expect(asked.type == .a && asked.name == q.questions[0].name)
    let r = ResponseBuilder.response(
      to: q,
      resolution: Resolution(rcode: .noError, answer: [ResponseBuilderTests.record, ResponseBuilderTests.record]))
    #expect(r.rcode == .noError)
    #expect(r.questions == q.questions)  // the client's ANY question, not the A lookup
    #expect(r.answers.count == 1)
    let hinfo = try #require(r.answers.first)
    #expect(hinfo.type == .hinfo && hinfo.name == q.questions[0].name && hinfo.ttl == ResponseBuilder.anyHINFOTTL)
    #expect(hinfo.rdata == .unknown([7] + Array("RFC8482".utf8) + [0]))
    #expect(try Message.parse(r.serialize()) == r)
  }

  @Test func anyForAMissingNameKeepsNXDOMAIN() {
    let q = ResponseBuilderTests.query("nothing.example.com", .any)
    let soa = ResourceRecord(name: .root, type: .soa, ttl: 5, rdata: .unknown([]))
    let r = ResponseBuilder.response(to: q, resolution: Resolution(rcode: .nxDomain, authority: [soa]))
    #expect(r.rcode == .nxDomain && r.answers.isEmpty && r.authority == [soa])
  }

  // MARK: Per-client token bucket

  @Test func rateLimiterAllowsABurstThenRefillsAtTheRate() {
    let limiter = ClientRateLimiter(rate: 10, burst: 5)
    let t0: UInt64 = 1_000_000_000
    let first = (0..<8).map { _ in limiter.allow(key("192.0.2.1"), now: t0) }
    #expect(first == [true, true, true, true, true, false, false, false])
    #expect(limiter.allow(key("192.0.2.2"), now: t0), "another address has its own bucket")
    // 10/s: after 0.25 s two tokens are back.
    let later = (0..<3).map { _ in limiter.allow(key("192.0.2.1"), now: t0 + 250_000_000) }
    #expect(later == [true, true, false])
  }

  /// An IPv6 host may use any address of its /64 (temporary addresses, RFC 8981): they share
  /// one bucket, so rotating addresses does not multiply its rate. Another /64 has its own.
  @Test func rateLimiterCountsAnIPv6Slash64AsOneClient() {
    let limiter = ClientRateLimiter(rate: 10, burst: 3)
    let t0: UInt64 = 1_000_000_000
    let rotating = ["2001:db8:1:2::1", "2001:db8:1:2:a::9", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::77"]
    #expect(rotating.map { limiter.allow(key($0), now: t0) } == [true, true, true, false])
    #expect(limiter.allow(key("2001:db8:1:3::1"), now: t0), "the next /64 is another client")
    #expect(limiter.allow(key("192.0.2.1"), now: t0))
    #expect(limiter.trackedClients == 3)
  }

  /// A thread that read the clock before another took the lock brings an older time: it must not
  /// refill the bucket (a wrapped difference of ~1.8e19 ns once filled it to the burst).
  @Test func rateLimiterOlderTimeRefillsNothing() {
    let limiter = ClientRateLimiter(rate: 10, burst: 2)
    let t0: UInt64 = 5_000_000_000
    #expect(limiter.allow(key("192.0.2.1"), now: t0) && limiter.allow(key("192.0.2.1"), now: t0))
    let stale = (0..<3).map { _ in limiter.allow(key("192.0.2.1"), now: t0 - 1_000) }
    #expect(stale == [false, false, false])
    // Time goes on from the newest reading: 0.1 s after t0 one token is back, not more.
    let later = (0..<2).map { _ in limiter.allow(key("192.0.2.1"), now: t0 + 100_000_000) }
    #expect(later == [true, false])
  }

  @Test func rateLimiterTableStaysBoundedUnderManySourceAddresses() {
    let limiter = ClientRateLimiter(rate: 1, burst: 1, maxClients: 100)
    for i in 0..<10_000 { _ = limiter.allow(key("10.0.\(i / 256).\(i % 256)"), now: 5_000_000_000) }
    #expect(limiter.trackedClients <= 100)
  }

  // MARK: Resolution cap

  @Test func resolutionSlotsAreCappedAndGivenBack() {
    let counters = ListenerCounters()
    #expect(counters.beginResolution(limit: 2) && counters.beginResolution(limit: 2))
    #expect(!counters.beginResolution(limit: 2))
    counters.endResolution()
    #expect(counters.beginResolution(limit: 2))
    #expect(counters.snapshot.resolutionsShed == 1 && counters.snapshot.resolutionsInFlight == 2)
  }

  /// Four threads (real ones: a task group runs no wider than the cores, two here) take and give
  /// back one slot as fast as they can: never more than one is held, every refusal is counted as
  /// shed, and all come back. The test holds the slot itself until a thread has been refused, so
  /// the threads contend however the two cores schedule them (unheld, they could run one after
  /// another on a busy machine and never meet).
  @Test func resolutionSlotsHoldTheirLimitUnderContention() async throws {
    final class Tally: Sendable {
      let held = Atomic<Int>(0)
      let worst = Atomic<Int>(0)
      let refused = Atomic<Int>(0)
      let taken = Atomic<Int>(0)
      /// The test gave its slot back: from then on the threads' attempts count against their bound.
      let released = Atomic<Bool>(false)
    }
    let counters = ListenerCounters()
    let tally = Tally()
    let done = DispatchGroup()
    #expect(counters.beginResolution(limit: 1))  // held by the test until a thread is refused
    for _ in 0..<4 {
      done.enter()
      Thread.detachNewThread {
        // Until 400,000 slots have been taken in all (a bound on attempts once the test's slot is
        // back, should slots leak). While the test holds its slot, a refused thread yields: four
        // threads spinning on two cores kept the test's task from running to give it back, so
        // under ASan all 20,000,000 attempts were once spent before it did (1 in 52 runs).
        var attempts = 0
        while attempts < 20_000_000 && tally.taken.load(ordering: .relaxed) < 400_000 {
          let released = tally.released.load(ordering: .relaxed)
          if released { attempts += 1 }
          guard counters.beginResolution(limit: 1) else {
            tally.refused.add(1, ordering: .relaxed)
            if !released { sched_yield() }
            continue
          }
          tally.taken.add(1, ordering: .relaxed)
          let now = tally.held.add(1, ordering: .relaxed).newValue
          _ = tally.worst.max(now, ordering: .relaxed)
          tally.held.subtract(1, ordering: .relaxed)
          counters.endResolution()
        }
        done.leave()
      }
    }
    // While the test holds the only slot, a thread must be refused well within 10 s, or the
    // cap does not cap.
    // The test waits suspended, not on a thread of the cooperative pool (the other suites' tasks
    // need it while the four threads spin).
    let deadline = Date().addingTimeInterval(10)
    while tally.refused.load(ordering: .relaxed) == 0 && Date() < deadline {
      try await Task.sleep(for: .milliseconds(1))
    }
    let refusedWhileHeld = tally.refused.load(ordering: .relaxed)
    counters.endResolution()
    tally.released.store(true, ordering: .relaxed)
    await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
      done.notify(queue: .global()) { finished.resume() }
    }
    #expect(refusedWhileHeld > 0, "a slot held by the test did not refuse the threads")
    #expect(tally.taken.load(ordering: .relaxed) >= 400_000, "slots stopped coming back")
    #expect(tally.worst.load(ordering: .relaxed) == 1)
    #expect(counters.snapshot.resolutionsInFlight == 0)
    #expect(counters.snapshot.resolutionsShed == tally.refused.load(ordering: .relaxed))
  }
}

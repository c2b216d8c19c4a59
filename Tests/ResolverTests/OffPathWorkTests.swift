import Foundation
import Synchronization
import Testing

@testable import Resolver

/// The thread that builds trust stores off the start-up path: waiters suspend until it is done,
/// all of them get its one result, and the work runs once.
@Suite struct OffPathWorkTests {
  /// More waiters than the machine has cooperative threads: if waiting blocked a thread, the
  /// pool would run dry and nothing else would run until the work is done.
  @Test func waitersSuspendUntilTheWorkIsDoneAndShareItsResult() async {
    let gate = DispatchSemaphore(value: 0)
    // If waiting blocked the pool, the gate opens by itself after 120 s (a Dispatch thread, not
    // the pool's), and the check below fails instead of hanging. Not sooner: the test task itself
    // can resume seconds late when other tests hold the pool (over 10 s once under ASan on CI).
    DispatchQueue.global().asyncAfter(deadline: .now() + 120) { gate.signal() }
    let runs = Mutex(0)
    let work = OffPathWork<Int>(name: "sotto-test") {
      gate.wait()
      runs.withLock { $0 += 1 }
      return 42
    }
    #expect(work.valueIfDone == nil)
    let waiters = (0..<(ProcessInfo.processInfo.activeProcessorCount * 4)).map { _ in
      Task { await work.value() }
    }
    try? await Task.sleep(for: .milliseconds(50))
    // Other work ran while they waited, and before the work was let go.
    #expect(await Task { work.valueIfDone == nil }.value)
    gate.signal()
    for waiter in waiters { #expect(await waiter.value == 42) }
    #expect(await work.value() == 42)  // after the fact, at once
    #expect(work.valueIfDone == 42)
    #expect(runs.withLock { $0 } == 1)
  }

  @Test func theWorkRunsOnANamedThreadOfItsOwn() async {
    let caller = pthread_self()
    let seen = Mutex<(Bool, String)>((false, ""))
    let work = OffPathWork<Bool>(name: "sotto-test-name") {
      let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
      seen.withLock { $0 = (pthread_equal(pthread_self(), caller) != 0, name.trimmingCharacters(in: .newlines)) }
      return true
    }
    #expect(await work.value())
    let (onCaller, name) = seen.withLock { $0 }
    #expect(!onCaller)
    #expect(name == "sotto-test-name")
  }
}

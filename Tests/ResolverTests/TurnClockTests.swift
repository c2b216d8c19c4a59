import Foundation
import Synchronization
import Testing

@testable import Resolver

/// The per-round clock: the keeper's reads stay at its last refresh, everyone else reads the
/// clock, and the engine thread refreshes it as it works (so TTLs and deadlines still move).
@Suite struct TurnClockTests {
  @Test func keeperReadsItsLastRefreshUntilTheNext() {
    let clock = TurnClock()
    clock.refresh()
    let first = clock.now()
    usleep(3_000)
    #expect(clock.now() == first, "the keeper's reads between refreshes cost no clock call")
    clock.refresh()
    #expect(clock.now() >= first + 3_000_000)
  }

  @Test func keeperWallClockIsTheRealTimeAtItsLastRefresh() {
    let clock = TurnClock()
    clock.refresh()
    let first = clock.wallSeconds()
    #expect(abs(first - Date().timeIntervalSince1970) < 0.5, "the wall reading is the real time")
    usleep(3_000)
    #expect(clock.wallSeconds() == first)
    clock.refresh()
    #expect(clock.wallSeconds() >= first + 0.003)
    #expect(abs(clock.wallSeconds() - Date().timeIntervalSince1970) < 0.5)
  }

  @Test func otherThreadsReadTheClockItself() {
    let clock = TurnClock()
    clock.refresh()
    let kept = clock.now()
    // (elapsed ns between two reads 3 ms apart, the wall reading's distance from Date's in s)
    let seen = Mutex<(UInt64, Double)>((0, .infinity))
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
      clock.refresh()  // not the keeper: ignored
      let a = clock.now()
      usleep(3_000)
      let b = clock.now()
      let wall = clock.wallSeconds()
      seen.withLock { $0 = (b &- a, abs(wall - Date().timeIntervalSince1970)) }
      done.signal()
    }
    thread.start()
    done.wait()
    let (elapsed, wallError) = seen.withLock { $0 }
    #expect(elapsed >= 3_000_000, "another thread's reads are live")
    #expect(wallError < 0.5, "another thread's wall reading is the real time")
    #expect(clock.now() == kept, "a refresh from another thread does not move the keeper's reading")
  }

  @Test func engineThreadRefreshesBetweenRounds() async throws {
    let executor = try #require(UDPExchangeEngine.shared.taskExecutor)
    let readings = try await Task(executorPreference: executor) { () async throws -> (Double, Double, Double) in
      let time = TurnTimeSource()
      let a = time.now()
      usleep(3_000)  // the same round
      let b = time.now()
      try await Task.sleep(for: .milliseconds(20))  // a later round
      return (a, b, time.now())
    }.value
    #expect(readings.0 == readings.1, "one round, one reading")
    #expect(readings.2 - readings.0 >= 0.015, "the engine refreshes the clock for later rounds")
  }
}

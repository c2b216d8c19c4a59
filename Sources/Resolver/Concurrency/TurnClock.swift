import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The monotonic clock as one thread last read it: the engine thread refreshes `engine` once when
/// it wakes and once per round of jobs, as Unbound reads its clock once per event-loop iteration.
/// A cold resolution read the clock about 25 times (cache lookups, deadlines, the packet cache);
/// on the engine thread those reads now cost no call. Any other thread reads the clock itself.
///
/// Only for uses where a round's length (microseconds; a few milliseconds under load) is nothing:
/// TTLs and resolution deadlines. Round-trip times, timers and timeouts read the clock itself.
@usableFromInline final class TurnClock: Sendable {
  /// The engine thread's clock.
  @usableFromInline static let engine = TurnClock()

  /// The `pthread_t` of the thread that keeps the time, 0 before its first refresh.
  private let keeper = Atomic<UInt>(0)
  /// Nanoseconds of CLOCK_MONOTONIC at the keeper's last refresh; only the keeper touches it.
  nonisolated(unsafe) private var nanoseconds: UInt64 = 0

  init() {}

  /// Reads the clock for the calling thread's coming round of work; that thread becomes the keeper.
  func refresh() {
    let me = UInt(pthread_self())
    if keeper.load(ordering: .relaxed) != me { keeper.store(me, ordering: .relaxed) }
    nanoseconds = Self.clockNanoseconds()
  }

  /// CLOCK_MONOTONIC in nanoseconds: the last refresh's reading on the keeper's thread, else now.
  @usableFromInline func now() -> UInt64 {
    keeper.load(ordering: .relaxed) == UInt(pthread_self()) ? nanoseconds : Self.clockNanoseconds()
  }

  /// CLOCK_MONOTONIC in nanoseconds, read now.
  static func clockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
  }
}

/// Monotonic seconds through a `TurnClock` (by default the engine's): for the cache and resolution
/// deadlines, on the same scale as `SystemTimeSource`.
public struct TurnTimeSource: TimeSource {
  let clock: TurnClock

  /// Reads the engine thread's clock.
  public init() { clock = .engine }

  init(clock: TurnClock) { self.clock = clock }

  public func now() -> Double { Double(clock.now()) / 1e9 }
}

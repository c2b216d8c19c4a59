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
/// TTLs, resolution deadlines, and wall-clock times that are logged or compared in seconds (the
/// query log, the RFC 9539 table). Round-trip times, timers, timeouts and QUIC read the clock itself.
@usableFromInline final class TurnClock: Sendable {
  /// The engine thread's clock.
  @usableFromInline static let engine = TurnClock()

  /// The `pthread_t` of the thread that keeps the time, 0 before its first refresh.
  private let keeper = Atomic<UInt>(0)
  /// Nanoseconds of `clockID` at the keeper's last refresh; only the keeper touches it.
  nonisolated(unsafe) private var nanoseconds: UInt64 = 0
  /// CLOCK_REALTIME minus `clockID` in nanoseconds, and the monotonic time it was taken at:
  /// re-read once a second of monotonic time (a step of the wall clock shows within a second of
  /// it; after a suspend, within a second of the resume).
  nonisolated(unsafe) private var wallOffset: Int64 = 0
  nonisolated(unsafe) private var wallOffsetAt: UInt64 = 0

  init() {}

  /// Reads the clock for the calling thread's coming round of work. The first thread to call it
  /// becomes the keeper for good; a call from any other thread does nothing (so the keeper's
  /// readings are only ever written and read on its own thread).
  func refresh() {
    let me = UInt(pthread_self())
    if keeper.load(ordering: .relaxed) != me {
      guard keeper.compareExchange(expected: 0, desired: me, ordering: .relaxed).exchanged else { return }
    }
    nanoseconds = Self.clockNanoseconds()
    if wallOffsetAt == 0 || nanoseconds &- wallOffsetAt >= 1_000_000_000 {
      wallOffset = Self.realtimeNanoseconds() &- Int64(bitPattern: nanoseconds)
      wallOffsetAt = nanoseconds
    }
  }

  /// `clockID` in nanoseconds: the last refresh's reading on the keeper's thread, else now.
  @usableFromInline func now() -> UInt64 {
    keeper.load(ordering: .relaxed) == UInt(pthread_self()) ? nanoseconds : Self.clockNanoseconds()
  }

  /// Seconds since 1970 (CLOCK_REALTIME): on the keeper's thread, at its last refresh (from the
  /// monotonic reading and an offset at most a second old), else now.
  @usableFromInline func wallSeconds() -> Double {
    let ns =
      keeper.load(ordering: .relaxed) == UInt(pthread_self())
      ? Int64(bitPattern: nanoseconds) &+ wallOffset : Self.realtimeNanoseconds()
    return Double(ns) / 1e9
  }

  /// CLOCK_REALTIME in nanoseconds since 1970, read now (what `Date()` gives, without Foundation).
  static func realtimeNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
  }

  /// The clock every TTL, deadline and engine timer is read from. On Linux CLOCK_BOOTTIME: it
  /// goes on while the machine is suspended (CLOCK_MONOTONIC stops), so a laptop that slept for
  /// an hour does not serve records whose TTL ran out meanwhile as fresh. As cheap to read as
  /// CLOCK_MONOTONIC on the kernel measured (23.3 against 22.9 ns, Linux 6.18).
  #if os(Linux)
    @inline(__always) static var clockID: clockid_t { CLOCK_BOOTTIME }
  #else
    @inline(__always) static var clockID: clockid_t { CLOCK_MONOTONIC }
  #endif

  /// `clockID` in nanoseconds, read now.
  static func clockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(Self.clockID, &ts)
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

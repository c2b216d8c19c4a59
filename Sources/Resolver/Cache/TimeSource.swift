import Foundation

/// Monotonic time in seconds; injected so the cache and state machines can be tested with a fake clock.
public protocol TimeSource: Sendable {
  /// Seconds since an arbitrary fixed point; never goes backwards on one thread (a reading on
  /// another thread may be later by up to an engine round: `TurnTimeSource`).
  func now() -> Double
}

/// The process's monotonic clock (`TurnClock.clockID`: on Linux it counts suspended time too).
public struct SystemTimeSource: TimeSource {
  public init() {}
  public func now() -> Double { Double(TurnClock.clockNanoseconds()) / 1e9 }
}

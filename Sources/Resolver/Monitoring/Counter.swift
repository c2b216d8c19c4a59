import Synchronization

/// A thread-safe monotonically increasing counter for monitoring.
public final class Counter: Sendable {
  private let storage = Atomic<Int>(0)
  public init() {}
  /// Adds `n` (default 1).
  public func increment(by n: Int = 1) { storage.add(n, ordering: .relaxed) }
  /// The current value.
  public var value: Int { storage.load(ordering: .relaxed) }
}

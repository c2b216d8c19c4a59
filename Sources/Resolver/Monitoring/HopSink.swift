import Synchronization

/// Where hops made outside any client's resolution go (a held server's probe or a slower
/// server's re-test, sent beside one; a refresh that ends after its client got the stale
/// answer): the stack connects it to its monitor, so the Privacy counts see every query sent.
public final class HopSink: Sendable {
  private let target = Mutex<(@Sendable ([Hop]) -> Void)?>(nil)

  public init() {}

  /// Sends the hops reported from now on to `report`.
  public func connect(_ report: @escaping @Sendable ([Hop]) -> Void) { target.withLock { $0 = report } }

  /// Passes `hops` on, if anything is connected.
  func report(_ hops: [Hop]) {
    guard !hops.isEmpty, let report = target.withLock({ $0 }) else { return }
    report(hops)
  }
}

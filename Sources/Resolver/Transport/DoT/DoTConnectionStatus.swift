/// The parts of a DoT or DoQ session readable from any thread: whether it takes queries and when
/// it last did.
final class DoTConnectionStatus: Sendable {
  private struct State {
    var active = false
    var lastActivity: Double = 0
    /// When a packet from the server last came (DoQ only; a DoT session's `reuseWithin` stays infinite).
    var lastReceived: Double = 0
    /// How long after the server's last packet the session still takes new queries (T-32).
    var reuseWithin = Double.infinity
    /// `close()` was called (set at the call, before the close runs on the engine thread).
    var closeRequested = false
  }
  private let state = StateLock(State())

  var isActive: Bool { state.withLock { $0.active } }
  var lastActivity: Double { state.withLock { $0.lastActivity } }

  /// At `now` the server was heard from within `reuseWithin`.
  func heardFromRecently(at now: Double) -> Bool {
    state.withLock { now - $0.lastReceived < $0.reuseWithin }
  }

  var closeRequested: Bool { state.withLock { $0.closeRequested } }

  func requestClose() { state.withLock { $0.closeRequested = true } }

  func markActive(at now: Double, reuseWithin: Double = .infinity) {
    state.withLock {
      $0.active = true
      $0.lastActivity = now
      $0.lastReceived = now
      $0.reuseWithin = reuseWithin
    }
  }

  func markInactive() { state.withLock { $0.active = false } }

  /// A query went out.
  func touch(at now: Double) { state.withLock { $0.lastActivity = now } }

  /// A packet came from the server.
  func received(at now: Double) {
    state.withLock {
      $0.lastActivity = now
      $0.lastReceived = now
    }
  }
}

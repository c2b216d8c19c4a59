/// The parts of a DoT session readable from any thread: whether it takes queries, when it last did
/// and the server's last keepalive TIMEOUT.
final class DoTConnectionStatus: Sendable {
  private struct State {
    var active = false
    var lastActivity: Double = 0
    var keepalive: Double?
  }
  private let state = StateLock(State())

  var isActive: Bool { state.withLock { $0.active } }
  var lastActivity: Double { state.withLock { $0.lastActivity } }
  /// Seconds; nil when the last reply carried no keepalive option.
  var keepalive: Double? { state.withLock { $0.keepalive } }

  func setKeepalive(_ seconds: Double?) { state.withLock { $0.keepalive = seconds } }

  func markActive(at now: Double) {
    state.withLock {
      $0.active = true
      $0.lastActivity = now
    }
  }

  func markInactive() { state.withLock { $0.active = false } }

  func touch(at now: Double) { state.withLock { $0.lastActivity = now } }
}

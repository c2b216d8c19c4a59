/// The parts of a DoT session readable from any thread: whether it takes queries and when it last did.
final class DoTConnectionStatus: Sendable {
  private struct State {
    var active = false
    var lastActivity: Double = 0
  }
  private let state = StateLock(State())

  var isActive: Bool { state.withLock { $0.active } }
  var lastActivity: Double { state.withLock { $0.lastActivity } }

  func markActive(at now: Double) {
    state.withLock {
      $0.active = true
      $0.lastActivity = now
    }
  }

  func markInactive() { state.withLock { $0.active = false } }

  func touch(at now: Double) { state.withLock { $0.lastActivity = now } }
}

/// Waits for something that finishes by callback, for at most a given time: an exchange waiting on
/// a pending encrypted connection or an early-data reply must not outlast the resolution's deadline.
enum BoundedWait {
  /// Calls `start` with a `finish` to call with the value (the first call counts) and returns that
  /// value, or nil once `seconds` have passed first. What `start` began goes on either way.
  static func value<T: Sendable>(
    within seconds: Double, engine: UDPExchangeEngine = .shared,
    _ start: (@escaping @Sendable (T) -> Void) -> Void
  ) async -> T? {
    let once = OnceResume<T?>()
    return await withUnsafeContinuation { continuation in
      once.arm(continuation)
      let cancel = OneShotTimer.start(after: seconds, engine: engine) { once.resume(nil) }
      start { value in
        once.resume(value)
        cancel()
      }
    }
  }
}

/// A callback after a delay, on the exchange engine's timers when the engine runs (a busy global
/// pool cannot hold it back), else after a `Task.sleep`.
enum OneShotTimer {
  /// Calls `fire` once `seconds` (at most a day) have passed unless the returned cancel ran first.
  /// A cancel that races the timer's setting (off the engine thread) leaves a timer that fires
  /// later; `fire` must tolerate that.
  static func start(after seconds: Double, engine: UDPExchangeEngine = .shared, _ fire: @escaping @Sendable () -> Void)
    -> @Sendable () -> Void
  {
    let nanoseconds = UInt64(max(0, min(seconds, 86_400)) * 1e9)
    guard engine.isRunning else {
      let timer = Task {
        try? await Task.sleep(nanoseconds: nanoseconds)
        if !Task.isCancelled { fire() }
      }
      return { timer.cancel() }
    }
    let token = engine.newTimerToken()
    let deadline = UDPExchangeEngine.now() &+ nanoseconds
    engine.execute { engine.setTimer(token, at: deadline, fire) }
    return { engine.clearTimer(token) }
  }
}

/// Resumes one waiting caller once; later values are dropped.
final class OnceResume<T: Sendable>: Sendable {
  private let continuation = StateLock<UnsafeContinuation<T, Never>?>(nil)

  /// Sets the caller to resume; called before anything can resume it.
  func arm(_ c: UnsafeContinuation<T, Never>) { continuation.withLock { $0 = c } }

  /// Resumes the caller with `value` unless it was resumed already.
  func resume(_ value: T) {
    let waiting = continuation.withLock { c -> UnsafeContinuation<T, Never>? in
      defer { c = nil }
      return c
    }
    waiting?.resume(returning: value)
  }
}

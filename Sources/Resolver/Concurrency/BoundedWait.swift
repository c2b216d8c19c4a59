/// Waits for something that finishes by callback, for at most a given time: an exchange waiting on
/// a pending encrypted connection or an early-data reply must not outlast the resolution's deadline.
enum BoundedWait {
  /// Calls `start` with a `finish` to call with the value (the first call counts) and returns that
  /// value, or nil once `seconds` have passed first. What `start` began goes on either way. The
  /// timer is the exchange engine's when it runs (a busy global pool cannot hold it back).
  static func value<T: Sendable>(
    within seconds: Double, engine: UDPExchangeEngine = .shared,
    _ start: (@escaping @Sendable (T) -> Void) -> Void
  ) async -> T? {
    let once = OnceResume<T?>()
    return await withUnsafeContinuation { continuation in
      once.arm(continuation)
      let nanoseconds = UInt64(max(0, min(seconds, 86_400)) * 1e9)
      if engine.isRunning {
        let token = engine.newTimerToken()
        let deadline = UDPExchangeEngine.now() &+ nanoseconds
        engine.execute { engine.setTimer(token, at: deadline) { once.resume(nil) } }
        start { value in
          once.resume(value)
          engine.clearTimer(token)
        }
      } else {
        let timer = Task {
          try? await Task.sleep(nanoseconds: nanoseconds)
          once.resume(nil)
        }
        start { value in
          once.resume(value)
          timer.cancel()
        }
      }
    }
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

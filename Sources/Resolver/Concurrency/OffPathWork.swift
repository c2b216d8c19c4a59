import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// One piece of slow start-up work (parsing a CA bundle) run on a thread of its own, so that
/// neither start-up nor a thread that serves queries waits for it. `value()` suspends, blocking
/// no thread, until the work is done; callers that need the result (a handshake's certificate
/// verdict) wait there instead of doing the work again on an I/O or cooperative thread.
final class OffPathWork<Value: Sendable>: Sendable {
  private enum State {
    case running([UnsafeContinuation<Value, Never>])
    case done(Value)
  }

  private let state = Mutex<State>(.running([]))

  /// Starts `work` on a new thread named `name`; if no thread can be started, runs it here.
  init(name: String, _ work: @escaping @Sendable () -> Value) {
    // The thread holds `self` until the work is done.
    let run: @Sendable () -> Void = { self.finish(work()) }
    if !startDetachedThread(name: name, run) { run() }
  }

  /// The result, once the work is done.
  var valueIfDone: Value? {
    state.withLock { state in
      if case .done(let value) = state { return value }
      return nil
    }
  }

  /// The result; suspends until the work is done.
  func value() async -> Value {
    if let value = valueIfDone { return value }
    return await withUnsafeContinuation { continuation in
      let ready: Value? = state.withLock { state in
        switch state {
        case .done(let value): return value
        case .running(var waiters):
          waiters.append(continuation)
          state = .running(waiters)
          return nil
        }
      }
      if let ready { continuation.resume(returning: ready) }
    }
  }

  private func finish(_ value: Value) {
    let waiters = state.withLock { state -> [UnsafeContinuation<Value, Never>] in
      guard case .running(let waiters) = state else { return [] }
      state = .done(value)
      return waiters
    }
    for waiter in waiters { waiter.resume(returning: value) }
  }
}

/// Runs `body` on a new detached thread named `name`; false if no thread could be started. The
/// process's exit waits for the thread to be done with `body` and all it held (`ExitWaitsForWork`).
private func startDetachedThread(name: String, _ body: @escaping @Sendable () -> Void) -> Bool {
  ExitWaitsForWork.begin()
  let box = Unmanaged.passRetained(ThreadBody(name: name, body: body)).toOpaque()
  var thread = pthread_t()
  let rc = pthread_create(
    &thread, nil,
    { arg in
      guard let arg else { return nil }
      do {
        let body = Unmanaged<ThreadBody>.fromOpaque(arg).takeRetainedValue()
        nameCurrentThread(body.name)
        body.body()
      }
      // Only now: releasing what the body held may free OpenSSL objects (an X509_STORE) too.
      ExitWaitsForWork.end()
      return nil
    }, box)
  guard rc == 0 else {
    Unmanaged<ThreadBody>.fromOpaque(box).release()
    ExitWaitsForWork.end()
    return false
  }
  pthread_detach(thread)
  return true
}

private final class ThreadBody: Sendable {
  let name: String
  let body: @Sendable () -> Void
  init(name: String, body: @escaping @Sendable () -> Void) {
    self.name = name
    self.body = body
  }
}

/// The process's exit waits (at most 2 s) for `startDetachedThread` threads still running: one
/// inside OpenSSL while `exit` ran crashed on a NULL lock under ThreadSanitizer (a `serve` that
/// failed to bind, in CI). What frees that lock at exit is not known: OpenSSL is initialised with
/// OPENSSL_INIT_NO_ATEXIT, and OPENSSL_cleanup was not called (gdb). Exits within the first
/// milliseconds of a start wait for at most one parse.
private enum ExitWaitsForWork {
  private static let running = Mutex(0)
  private static let registered: Bool = {
    atexit { ExitWaitsForWork.drain() } == 0
  }()

  static func begin() {
    _ = registered
    running.withLock { $0 += 1 }
  }

  static func end() { running.withLock { $0 -= 1 } }

  /// Polls until nothing runs, or 2 s have passed.
  static func drain() {
    var waited = 0
    while waited < 2000, running.withLock({ $0 }) > 0 {
      usleep(1000)
      waited += 1
    }
  }
}

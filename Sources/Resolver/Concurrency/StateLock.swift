#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A value that is only read and written under a lock: `withLock` runs its closure with the
/// lock held.
///
/// Used instead of the Synchronization module's `Mutex`. That lock lives in the precompiled,
/// uninstrumented Swift runtime (a futex), so ThreadSanitizer sees no ordering between two
/// `withLock` closures and reports every guarded access as a race
/// (`Tests/Sanitizers/tsan_mutex_repro.swift`). ThreadSanitizer intercepts the pthread mutex
/// used here, so `make integration-test-tsan` reports only real races. The uncontended cost is
/// the same kind: one atomic compare-and-swap to lock and one to unlock.
public final class StateLock<Value>: @unchecked Sendable {
  // Both live in their own allocations: a pthread mutex must not move, and keeping the value
  // out of a class stored property avoids a dynamic exclusivity check on every access.
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let value: UnsafeMutablePointer<Value>

  /// A lock guarding `initial`.
  public init(_ initial: Value) {
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    let rc = pthread_mutex_init(mutex, nil)
    precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
    value = .allocate(capacity: 1)
    value.initialize(to: initial)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
    value.deinitialize(count: 1)
    value.deallocate()
  }

  /// Runs `body` with the lock held and exclusive access to the value; returns what it returns.
  @inline(__always)
  public func withLock<Result, E: Error>(
    _ body: (inout Value) throws(E) -> Result
  ) throws(E) -> Result {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body(&value.pointee)
  }
}

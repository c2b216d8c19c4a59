/// Shares one run of an async operation among concurrent callers with the same key: the first
/// caller runs it in its own task, later ones wait for its result. No task is created: the
/// owner runs the body inline and only joiners suspend (a `Task` per run cost a task creation,
/// an enqueue and a suspension on every resolution and every upstream exchange).
final class Coalescer<Key: Hashable & Sendable, Value: Sendable>: Sendable {
  /// What a joiner is given: the run's value, or nil to run again as the owner.
  typealias Waiter = @Sendable (Value?) -> Void
  private let waiting = StateLock<[Key: [Waiter]]>([:])

  /// Callers waiting for another caller's run (owners not counted; a joiner whose `joinLimit`
  /// ran out stays counted until the run ends). Takes the lock: for tests and diagnostics.
  var joiners: Int { waiting.withLock { $0.values.reduce(0) { $0 + $1.count } } }

  /// True while a run for `key` is in flight (a caller now would join it). Takes the lock.
  func isRunning(_ key: Key) -> Bool { waiting.withLock { $0[key] != nil } }

  /// The value of the run in flight for `key`, or of `body` run now by this caller.
  /// `joined` is true when another caller's run was shared. With `joinLimit`, a joiner waits for
  /// it at most `seconds` (its own time limit, which the owner's run does not know) and then
  /// returns `expired`; the run goes on for the others.
  @inline(__always)
  nonisolated(nonsending) func run(
    _ key: Key, joinLimit: (seconds: Double, expired: Value)? = nil, _ body: nonisolated(nonsending) () async -> Value
  ) async -> (value: Value, joined: Bool) {
    while true {
      let owner = waiting.withLock { table -> Bool in
        guard table[key] == nil else { return false }
        table[key] = []
        return true
      }
      if owner {
        let value = await body()
        let waiters = waiting.withLock { $0.removeValue(forKey: key) } ?? []
        for waiter in waiters { waiter(value) }
        return (value, false)
      }
      let join: (@escaping Waiter) -> Void = { finish in
        let queued = self.waiting.withLock { table -> Bool in
          guard table[key] != nil else { return false }
          table[key]?.append(finish)
          return true
        }
        // The run finished between the two locks: nothing to join, run again as the owner.
        if !queued { finish(nil) }
      }
      let shared: Value?
      if let joinLimit {
        guard let outcome = await BoundedWait.value(within: joinLimit.seconds, join) else {
          return (joinLimit.expired, true)
        }
        shared = outcome
      } else {
        shared = await withUnsafeContinuation { continuation in join { continuation.resume(returning: $0) } }
      }
      if let shared { return (shared, true) }
    }
  }
}

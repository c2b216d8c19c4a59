/// Shares one run of an async operation among concurrent callers with the same key: the first
/// caller runs it in its own task, later ones wait for its result. No task is created: the
/// owner runs the body inline and only joiners suspend (a `Task` per run cost a task creation,
/// an enqueue and a suspension on every resolution and every upstream exchange).
final class Coalescer<Key: Hashable & Sendable, Value: Sendable>: Sendable {
  private let waiting = StateLock<[Key: [UnsafeContinuation<Value?, Never>]]>([:])

  /// The value of the run in flight for `key`, or of `body` run now by this caller.
  /// `joined` is true when another caller's run was shared.
  nonisolated(nonsending) func run(_ key: Key, _ body: nonisolated(nonsending) () async -> Value) async -> (
    value: Value, joined: Bool
  ) {
    while true {
      let owner = waiting.withLock { table -> Bool in
        guard table[key] == nil else { return false }
        table[key] = []
        return true
      }
      if owner {
        let value = await body()
        let waiters = waiting.withLock { $0.removeValue(forKey: key) } ?? []
        for waiter in waiters { waiter.resume(returning: value) }
        return (value, false)
      }
      let shared: Value? = await withUnsafeContinuation { continuation in
        let queued = waiting.withLock { table -> Bool in
          guard table[key] != nil else { return false }
          table[key]?.append(continuation)
          return true
        }
        // The run finished between the two locks: nothing to join, run again as the owner.
        if !queued { continuation.resume(returning: nil) }
      }
      if let shared { return (shared, true) }
    }
  }
}

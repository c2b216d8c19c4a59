import Synchronization

/// Remembers recently failed questions so they are answered SERVFAIL without new upstream
/// traffic, with a bounded size.
final class FailureCache: Sendable {
  private let entries = StateLock<[Question: Double]>([:])
  /// The table's size as of its last change (expired entries count until met): `contains` skips
  /// the lock while it is 0, the usual case, since every cold resolution asks.
  private let held = Atomic<Int>(0)
  let ttl: Double
  let capacity: Int
  let time: any TimeSource

  init(ttl: Double, capacity: Int = 10_000, time: any TimeSource) {
    self.ttl = ttl
    self.capacity = capacity
    self.time = time
  }

  func insert(_ q: Question) {
    guard ttl > 0 else { return }
    let now = time.now()
    entries.withLock { table in
      if table.count >= capacity { table = table.filter { $0.value > now } }
      if table.count < capacity { table[q] = now + ttl }
      held.store(table.count, ordering: .releasing)
    }
  }

  func contains(_ q: Question) -> Bool {
    guard held.load(ordering: .acquiring) > 0 else { return false }
    let now = time.now()
    return entries.withLock { table in
      guard let until = table[q] else { return false }
      if until <= now {
        table[q] = nil
        held.store(table.count, ordering: .releasing)
        return false
      }
      return true
    }
  }

  func removeAll() {
    entries.withLock {
      $0.removeAll()
      held.store(0, ordering: .releasing)
    }
  }
}

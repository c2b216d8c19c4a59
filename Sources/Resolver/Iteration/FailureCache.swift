/// Remembers recently failed questions so they are answered SERVFAIL without new upstream
/// traffic, with a bounded size.
final class FailureCache: Sendable {
  private let entries = StateLock<[Question: Double]>([:])
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
    }
  }

  func contains(_ q: Question) -> Bool {
    let now = time.now()
    return entries.withLock { table in
      guard let until = table[q] else { return false }
      if until <= now {
        table[q] = nil
        return false
      }
      return true
    }
  }

  func removeAll() { entries.withLock { $0.removeAll() } }
}

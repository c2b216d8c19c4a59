import Synchronization

/// Remembers recently failed questions so they are answered SERVFAIL without new upstream
/// traffic, with a bounded size.
final class FailureCache: Sendable {
  private let entries = StateLock<[Question: Double]>([:])
  /// The latest expiry of any entry (a `Double`'s bits; 0: none): `contains` skips the lock once
  /// it has passed, the usual case, since every cold resolution asks. Expired entries left in
  /// the table do not hold it up.
  private let latestExpiry = Atomic<UInt64>(0)
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
    entries.withLock { _ = store(q, now: now, in: &$0) }
  }

  /// Puts `q` in `table` (under the lock) unless the table is full of live entries; whether it did.
  private func store(_ q: Question, now: Double, in table: inout [Question: Double]) -> Bool {
    if table.count >= capacity { table = table.filter { $0.value > now } }
    guard table.count < capacity else { return false }
    table[q] = now + ttl
    let latest = max(Double(bitPattern: latestExpiry.load(ordering: .relaxed)), now + ttl)
    latestExpiry.store(latest.bitPattern, ordering: .releasing)
    return true
  }

  func contains(_ q: Question) -> Bool {
    let now = time.now()
    guard now < Double(bitPattern: latestExpiry.load(ordering: .acquiring)) else { return false }
    return entries.withLock { table in
      guard let until = table[q] else { return false }
      if until <= now {
        table[q] = nil
        return false
      }
      return true
    }
  }

  /// Inserts `q` unless it is there (live); false when it was, or when the table is full of live
  /// entries. One lock: of concurrent callers, one gets true.
  func insertIfAbsent(_ q: Question) -> Bool {
    guard ttl > 0 else { return false }
    let now = time.now()
    return entries.withLock { table in
      if let until = table[q], until > now { return false }
      return store(q, now: now, in: &table)
    }
  }

  /// Forgets `questions` (a restarted resolution must not find its own failures).
  func remove(_ questions: [Question]) {
    guard !questions.isEmpty else { return }
    entries.withLock { table in for q in questions { table[q] = nil } }
  }

  func removeAll() {
    entries.withLock {
      $0.removeAll()
      latestExpiry.store(0, ordering: .releasing)
    }
  }
}

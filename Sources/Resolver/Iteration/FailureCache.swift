import Synchronization

/// Remembers recently failed questions so they are answered SERVFAIL without new upstream
/// traffic, with a bounded size. With `maxTTL`, a failure that comes back within its last
/// span after that expired is kept twice as long, up to `maxTTL` (R-24, RFC 9520 §3.2: back off
/// while failures persist); a question quiet for longer starts again at `ttl`.
final class FailureCache: Sendable {
  struct Entry {
    /// Until when the failure is answered from here.
    var until: Double
    /// How long it was kept for.
    var span: Double
  }
  private let entries = StateLock<[Question: Entry]>([:])
  /// The latest expiry of any entry (a `Double`'s bits; 0: none): `contains` skips the lock once
  /// it has passed, the usual case, since every cold resolution asks. Expired entries left in
  /// the table do not hold it up.
  private let latestExpiry = Atomic<UInt64>(0)
  let ttl: Double
  /// The longest span a persisting failure backs off to; nil: always `ttl`.
  let maxTTL: Double?
  let capacity: Int
  let time: any TimeSource

  init(ttl: Double, maxTTL: Double? = nil, capacity: Int = 10_000, time: any TimeSource) {
    self.ttl = ttl
    self.maxTTL = maxTTL.map { max($0, ttl) }
    self.capacity = capacity
    self.time = time
  }

  func insert(_ q: Question) {
    guard ttl > 0 else { return }
    let now = time.now()
    entries.withLock { _ = store(q, now: now, in: &$0) }
  }

  /// Puts `q` in `table` (under the lock) unless the table is full of live entries; whether it did.
  private func store(_ q: Question, now: Double, in table: inout [Question: Entry]) -> Bool {
    var span = ttl
    if let last = table[q] {
      // Still live: failures that come together (joined queries) are one failure, not a
      // persisting one; the entry stands as it is.
      if maxTTL != nil, last.until > now { return true }
      if let maxTTL, now - last.until <= last.span {
        span = min(maxTTL, max(ttl, last.span * 2))  // failed again soon after the last one expired
      }
    }
    if table.count >= capacity { table = table.filter { $0.value.until > now } }
    guard table.count < capacity else { return false }
    table[q] = Entry(until: now + span, span: span)
    let latest = max(Double(bitPattern: latestExpiry.load(ordering: .relaxed)), now + span)
    latestExpiry.store(latest.bitPattern, ordering: .releasing)
    return true
  }

  func contains(_ q: Question) -> Bool {
    let now = time.now()
    guard now < Double(bitPattern: latestExpiry.load(ordering: .acquiring)) else { return false }
    return entries.withLock { table in
      guard let entry = table[q] else { return false }
      if entry.until <= now {
        // Kept a while after it expires when failures back off: its span is the next one's start.
        if maxTTL == nil || now - entry.until > entry.span { table[q] = nil }
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
      if let entry = table[q], entry.until > now { return false }
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

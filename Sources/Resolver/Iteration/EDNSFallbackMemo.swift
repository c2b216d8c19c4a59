import Synchronization

/// Servers that answered an EDNS query with FORMERR or NOTIMP without an OPT record and then
/// answered the same query without EDNS (RFC 6891 §6.2.2, T-46): for `lifetime` seconds they are
/// asked without EDNS at once, instead of paying that FORMERR round trip on every query. After
/// that EDNS is tried again (the server may have been upgraded, a middlebox removed). A timeout
/// never lands a server here (DNS Flag Day 2019). Bounded: at `capacity`, expired entries are
/// pruned, and a full table of live ones is started afresh.
final class EDNSFallbackMemo: Sendable {
  private let until = StateLock<[String: Double]>([:])
  /// The latest expiry of any entry (a `Double`'s bits; 0: none): `isPlain` takes no lock once it
  /// has passed, the usual case (every upstream query asks), as `FailureCache.contains` does.
  private let latestExpiry = Atomic<UInt64>(0)
  let lifetime: Double
  let capacity: Int
  let time: any TimeSource

  init(lifetime: Double = 300, capacity: Int = 4_096, time: any TimeSource) {
    self.lifetime = lifetime
    self.capacity = capacity
    self.time = time
  }

  /// Whether `server` is to be asked without EDNS now.
  func isPlain(_ server: String) -> Bool {
    let now = time.now()
    guard now < Double(bitPattern: latestExpiry.load(ordering: .relaxed)) else { return false }
    return until.withLock { table in
      guard let end = table[server] else { return false }
      if end > now { return true }
      table[server] = nil
      return false
    }
  }

  /// `server` answered without EDNS after refusing it: ask it so for `lifetime` seconds.
  func remember(_ server: String) {
    let now = time.now()
    until.withLock { table in
      if table.count >= capacity && table[server] == nil {
        table = table.filter { $0.value > now }
        if table.count >= capacity { table.removeAll() }
      }
      table[server] = now + lifetime
      latestExpiry.store((now + lifetime).bitPattern, ordering: .relaxed)
    }
  }

  /// Servers remembered and not yet expired.
  var count: Int {
    let now = time.now()
    return until.withLock { $0.values.count { $0 > now } }
  }
}

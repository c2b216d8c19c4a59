import NIOCore

/// Per-client token buckets (an IPv4 address or an IPv6 prefix, `ClientKey`): each may send `rate`
/// queries per second with bursts of up to `burst`. The table holds at most `maxClients`
/// clients; when it is full, buckets that have refilled completely are dropped, and if none
/// has, the table starts over (a spoofed flood from many addresses cannot grow memory without
/// bound).
final class ClientRateLimiter: Sendable {
  struct Bucket {
    var tokens: Double
    var last: UInt64
  }

  let rate: Double
  let burst: Double
  let maxClients: Int
  /// The IPv6 prefix length a client is counted by (`ClientKey`).
  let ipv6Prefix: Int
  private let buckets = StateLock<[ClientKey: Bucket]>([:])

  /// `rate` queries per second per client (must be > 0); bursts up to `burst` (at least 1).
  init(rate: Double, burst: Double? = nil, maxClients: Int = 65_536, ipv6Prefix: Int = 64) {
    self.ipv6Prefix = ipv6Prefix
    self.rate = rate
    self.burst = max(1, burst ?? rate)
    self.maxClients = maxClients
  }

  /// Takes one token for `client` at `now` (monotonic nanoseconds); false when it has none left.
  /// `now` is read before the lock, so a thread may bring a time older than the bucket's (UDP on
  /// the engine thread, TCP on the event loops): that refills nothing.
  func allow(_ client: ClientKey, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Bool {
    buckets.withLock { table in
      if var bucket = table[client] {
        let elapsed = Double(now > bucket.last ? now - bucket.last : 0) / 1e9
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
        bucket.last = max(bucket.last, now)
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        table[client] = bucket
        return allowed
      }
      if table.count >= maxClients { prune(&table, now: now) }
      table[client] = Bucket(tokens: burst - 1, last: now)
      return true
    }
  }

  /// Clients tracked now.
  var trackedClients: Int { buckets.withLock { $0.count } }

  private func prune(_ table: inout [ClientKey: Bucket], now: UInt64) {
    let refill = burst / rate
    table = table.filter { $0.value.last >= now || Double(now - $0.value.last) / 1e9 < refill }
    if table.count >= maxClients { table.removeAll(keepingCapacity: true) }
  }
}

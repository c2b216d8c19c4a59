/// Smoothed RTT per server address, shared by all resolutions.
public final class ServerSelection: Sendable {
  private let srtt = StateLock<[String: Double]>([:])  // milliseconds
  private let timeoutCounts = StateLock<[String: Int]>([:])
  private let timeoutTotal = Counter()
  /// Retransmit timeout used for servers never heard from.
  let unknownTimeoutMs: Double

  /// `unknownTimeoutMs` is the retransmit timeout for servers never heard from.
  public init(unknownTimeoutMs: Double = 800) { self.unknownTimeoutMs = unknownTimeoutMs }

  /// Records a measured round trip.
  public func record(server: String, rttMs: Double) {
    srtt.withLock { table in
      if let old = table[server] {
        table[server] = 0.7 * old + 0.3 * rttMs
      } else {
        table[server] = rttMs
      }
    }
  }

  /// Records a timeout: the srtt doubles, capped at 10 s.
  public func recordTimeout(server: String) {
    srtt.withLock { table in
      table[server] = min(10_000, max(table[server] ?? 200, 100) * 2)
    }
    timeoutCounts.withLock { $0[server, default: 0] += 1 }
    timeoutTotal.increment()
  }

  /// Timeouts recorded for `server` so far (monitoring).
  public func timeouts(server: String) -> Int { timeoutCounts.withLock { $0[server] ?? 0 } }

  /// Timeouts recorded for all servers so far.
  public var totalTimeouts: Int { timeoutTotal.value }

  /// The smoothed RTT, nil for an unknown server.
  public func smoothedRTT(server: String) -> Double? { srtt.withLock { $0[server] } }

  /// Retransmit timeout in milliseconds: clamp(2·srtt, 200 ms, 3 s).
  public func timeoutMs(server: String) -> Double {
    guard let s = smoothedRTT(server: server) else { return unknownTimeoutMs }
    return min(3_000, max(200, 2 * s))
  }

  /// Orders candidates: unknown servers first (so they get measured), then by srtt, with servers
  /// within 100 ms of the best shuffled among themselves. Among servers within `margin` ms of the
  /// best, those for which `prefer` holds (working encryption) come first.
  public func order<T>(_ candidates: [T], key: (T) -> String, prefer: (T) -> Bool = { _ in false }, margin: Double = 0)
    -> [T]
  {
    // One candidate (most delegations in a resolution's path): nothing to order, nothing to allocate.
    if candidates.count <= 1 { return candidates }
    let table = srtt.withLock { $0 }
    var random = PooledRandom()
    // In place: one array for the scores and one for the result (this runs for every upstream query).
    var scored = candidates.map { c -> (T, Double) in
      (c, table[key(c)] ?? Double.random(in: 0..<5, using: &random))
    }
    scored.shuffle(using: &random)
    scored.sort { $0.1 < $1.1 }
    let best = scored[0].1
    // Sorted, so the servers within 100 ms of the best are a prefix; they are shuffled among themselves.
    let nearCount = scored.firstIndex { $0.1 > best + 100 } ?? scored.count
    scored[0..<nearCount].shuffle(using: &random)
    // Privacy-aware choice: a comparable server that speaks encryption goes first.
    if let i = scored.firstIndex(where: { $0.1 <= best + margin && prefer($0.0) }), i > 0 {
      let chosen = scored.remove(at: i)
      scored.insert(chosen, at: 0)
    }
    return scored.map { $0.0 }
  }

  /// Number of servers with a recorded srtt.
  public var knownServers: Int { srtt.withLock { $0.count } }
}

import Synchronization

/// Smoothed RTT per server address and servers held as unresponsive, shared by all
/// resolutions.
public final class ServerSelection: Sendable {
  private let table = StateLock<[String: ServerHealth]>([:])
  private let timeoutTotal = Counter()
  private let probeTotal = Counter()
  /// Servers held right now: while 0, nothing is looked up to admit candidates.
  private let heldCount = Atomic<Int>(0)
  /// Retransmit timeout used for servers never heard from.
  let unknownTimeoutMs: Double
  let rule: ServerHealth.Rule
  let time: any TimeSource

  /// `unknownTimeoutMs` is the retransmit timeout for servers never heard from; `rule` when a
  /// server is held as unresponsive.
  public convenience init(unknownTimeoutMs: Double = 800) {
    self.init(unknownTimeoutMs: unknownTimeoutMs, rule: ServerHealth.Rule(), time: SystemTimeSource())
  }

  init(unknownTimeoutMs: Double, rule: ServerHealth.Rule, time: any TimeSource) {
    self.unknownTimeoutMs = unknownTimeoutMs
    self.rule = rule
    self.time = time
  }

  /// Records a measured round trip of a `kind` query; true when it ended a hold.
  @discardableResult
  func record(server: String, rttMs: Double, kind: ServerHealth.Kind = .a) -> Bool {
    let now = time.now()
    return table.withLock {
      let ended = $0[server, default: ServerHealth()].measured(rttMs: rttMs, at: now, kind: kind)
      // Under the lock, as the hold it counts: the count never disagrees with the table for long.
      if ended { heldCount.subtract(1, ordering: .relaxed) }
      return ended
    }
  }

  /// Records a reply to a `kind` query whose round trip is no measure of the server (TCP: it
  /// includes the handshake); true when it ended a hold.
  @discardableResult
  func recordReply(server: String, kind: ServerHealth.Kind = .a) -> Bool {
    let now = time.now()
    return table.withLock {
      let ended = $0[server]?.reply(at: now, kind: kind) ?? false
      if ended { heldCount.subtract(1, ordering: .relaxed) }
      return ended
    }
  }

  /// Records a reply from `server` that was no answer, or a refused port (`ServerHealth.penalise`).
  /// `replied`: the server did reply (to a `kind` query), so it is alive: that ends its silent
  /// streak and its hold, as any reply does; true when a hold ended.
  @discardableResult
  func penalise(server: String, replied kind: ServerHealth.Kind? = nil) -> Bool {
    let now = time.now()
    return table.withLock {
      $0[server, default: ServerHealth()].penalise()
      guard let kind, let ended = $0[server]?.reply(at: now, kind: kind), ended else { return false }
      heldCount.subtract(1, ordering: .relaxed)
      return true
    }
  }

  /// Records a timeout of a `kind` query sent at `sentAt` (`time` seconds): the srtt doubles,
  /// capped at 10 s; true when the server is now held as unresponsive to that kind. `silence`:
  /// whether it counts towards a hold (`ServerHealth.timeout`).
  @discardableResult
  func recordTimeout(server: String, sentAt: Double, kind: ServerHealth.Kind = .a, silence: Bool = true) -> Bool {
    let now = time.now()
    let rule = self.rule
    let held = table.withLock {
      let held = $0[server, default: ServerHealth()].timeout(
        sentAt: sentAt, at: now, rule: rule, kind: kind, silence: silence)
      if held { heldCount.add(1, ordering: .relaxed) }
      return held
    }
    timeoutTotal.increment()
    return held
  }

  /// The candidates a resolution that started at `runStarted` may send a `kind` query to now
  /// (`ServerHealth.admission`): `free` ones, held ones whose probe is due (`probes`: each
  /// probed only if `claimProbe` gives it), and how many were left out.
  /// Nothing is looked up while no server is held.
  func admitted<T>(_ candidates: [T], key: (T) -> String, runStarted: Double, kind: ServerHealth.Kind)
    -> (free: [T], probes: [T], heldBack: Int)
  {
    guard heldCount.load(ordering: .relaxed) > 0 else { return (candidates, [], 0) }
    let now = time.now()
    var free: [T] = []
    var probes: [T] = []
    table.withLock { table in
      for c in candidates {
        switch table[key(c)]?.admission(runStarted: runStarted, at: now, kind: kind) ?? .free {
        case .free: free.append(c)
        case .probeDue: probes.append(c)
        case .held: break
        }
      }
    }
    return (free, probes, candidates.count - free.count - probes.count)
  }

  /// Takes `server`'s probe for `kind` now (just before sending it): `.notDue` when another
  /// resolution took it first, `.notHeld` when a reply ended the hold meanwhile.
  func claimProbe(server: String, kind: ServerHealth.Kind) -> ServerHealth.ProbeClaim {
    let now = time.now()
    let rule = self.rule
    let busy = timeoutMs(server: server) / 1000  // the probe's own timeout
    return table.withLock { $0[server]?.claimProbe(at: now, rule: rule, kind: kind, busy: busy) ?? .notHeld }
  }

  /// Counts a probe sent to a held server.
  func noteProbe() { probeTotal.increment() }

  /// Probes sent to servers held as unresponsive so far (monitoring).
  public var probesSent: Int { probeTotal.value }

  /// Timeouts recorded for `server` so far (monitoring).
  public func timeouts(server: String) -> Int { table.withLock { $0[server]?.timeouts ?? 0 } }

  /// Timeouts recorded for all servers so far.
  public var totalTimeouts: Int { timeoutTotal.value }

  /// Holds in force right now (a server held for two kinds of query counts twice).
  public var heldServers: Int { max(0, heldCount.load(ordering: .relaxed)) }

  /// Seconds until `server`, held as unresponsive to some kind of query, may be probed (0: the
  /// next resolution that asks its zone probes it); nil when it is not held.
  public func probeIn(server: String) -> Double? {
    guard heldCount.load(ordering: .relaxed) > 0 else { return nil }
    let now = time.now()
    return table.withLock { $0[server]?.nextProbe.map { max(0, $0 - now) } }
  }

  /// The smoothed RTT, nil for an unknown server.
  public func smoothedRTT(server: String) -> Double? { table.withLock { $0[server]?.srtt } }

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
    rank(candidates, key: key, prefer: prefer, margin: margin).ordered
  }

  /// `order`, and whether a candidate is more than 100 ms slower than the best (only then can a
  /// server age or be due a re-test, so only then are they looked for).
  func rank<T>(_ candidates: [T], key: (T) -> String, prefer: (T) -> Bool, margin: Double)
    -> (ordered: [T], someSlower: Bool)
  {
    // One candidate (most delegations in a resolution's path): nothing to order, nothing to allocate.
    if candidates.count <= 1 { return (candidates, false) }
    var random = PooledRandom()
    // In place: one array for the scores and one for the result (this runs for every upstream
    // query); scored under the lock, which is cheaper than copying the table out.
    var scored = table.withLock { table in
      candidates.map { c -> (T, Double) in
        (c, table[key(c)]?.srtt ?? Double.random(in: 0..<5, using: &random))
      }
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
    return (scored.map { $0.0 }, nearCount < scored.count)
  }

  /// Least seconds between two re-tests of one server.
  static let minRetestGap = 30.0

  /// Notes that `unasked` servers of a zone whose candidates are `zone` were left unasked while
  /// another answered: those more than 100 ms slower than the zone's best age
  /// (`ServerHealth.leftUnasked`, R-39), or, when `mayAge` is false, stop aging.
  func leftUnasked(_ unasked: [(server: String, mayAge: Bool)], zone: [String]) {
    let now = time.now()
    table.withLock { table in
      guard let best = Self.best(of: zone, key: { $0 }, in: table) else { return }
      for u in unasked where (table[u.server]?.srtt ?? 0) > best + 100 {
        if u.mayAge { table[u.server]?.leftUnasked(at: now) } else { table[u.server]?.stopAging() }
      }
    }
  }

  /// The first of `candidates` that `allowed` lets through and that is due a re-test
  /// (`ServerHealth.takeRetest`), taken; nil when none is.
  func takeRetest<T>(_ candidates: [T], key: (T) -> String, allowed: [Bool]) -> T? {
    let now = time.now()
    return table.withLock { table in
      guard let best = Self.best(of: candidates, key: key, in: table) else { return nil }
      for (c, ok) in zip(candidates, allowed) where ok {
        if table[key(c)]?.takeRetest(best: best, at: now, minGap: Self.minRetestGap) ?? false { return c }
      }
      return nil
    }
  }

  /// The lowest srtt of `candidates` in `table`; nil when none is known.
  private static func best<T>(of candidates: [T], key: (T) -> String, in table: [String: ServerHealth]) -> Double? {
    var best = Double.infinity
    for c in candidates { if let srtt = table[key(c)]?.srtt { best = min(best, srtt) } }
    return best.isFinite ? best : nil
  }

  /// Number of servers with a recorded srtt.
  public var knownServers: Int { table.withLock { $0.values.count { $0.srtt != nil } } }
}

import Foundation
import NIOCore

/// Counts per time bucket in a fixed ring: bucket `k` covers `[k·width, (k+1)·width)` seconds.
/// Buckets older than the ring are overwritten lazily, so adding is O(1).
public struct BucketSeries: Sendable, Hashable {
  public let width: Double
  private var stamps: [Int]
  private var counts: [Int]

  public init(buckets: Int, width: Double) {
    self.width = width
    stamps = Array(repeating: Int.min, count: buckets)
    counts = Array(repeating: 0, count: buckets)
  }

  public mutating func add(_ n: Int = 1, at time: Double) {
    let k = Int((time / width).rounded(.down))
    let i = ((k % counts.count) + counts.count) % counts.count
    if stamps[i] != k {
      stamps[i] = k
      counts[i] = 0
    }
    counts[i] += n
  }

  /// The counts of the last `buckets` buckets up to and including the one holding `now`, oldest first.
  public func values(now: Double) -> [Int] {
    let current = Int((now / width).rounded(.down))
    return (0..<counts.count).reversed().map { back in
      let k = current - back
      let i = ((k % counts.count) + counts.count) % counts.count
      return stamps[i] == k ? counts[i] : 0
    }
  }
}

/// What the listener and resolver report for monitoring: client queries, a log of the latest
/// ones, and cleartext exposure. Thread-safe; `record` takes one short lock and allocates only
/// the log entry, so it is cheap on the hot path.
public final class ResolverMonitor: Sendable {
  /// Client queries kept in the log.
  public static let logCapacity = 500
  /// Recent cleartext names kept for the Privacy panel.
  public static let leakCapacity = 200

  struct State {
    var listeners: [String] = []
    var clientQueries = 0
    var cacheHits = 0
    var perSecond = BucketSeries(buckets: 12, width: 1)
    var log: [LogItem] = []
    var logNext = 0
    var cleartextHops = 0
    var encryptedHops = 0
    /// Keyed by the zone as spelled in the hop: no text is made until a snapshot.
    var cleartextByZone: [NameText.Spelling: ZoneCount] = [:]
    var cleartextByServer: [String: Int] = [:]
    var leaks: [RecordedLeak] = []
    var leakNext = 0
    var cleartextSeries = BucketSeries(buckets: 60, width: 10)
    var encryptedSeries = BucketSeries(buckets: 60, width: 10)
  }

  /// Unix seconds when monitoring started.
  public let startTime: Double
  let wallClock: @Sendable () -> Double
  let state = StateLock(State())
  /// The client listener's counters (caps, refusals, drops); the `Listener` given this monitor uses them.
  public let listenerCounters = ListenerCounters()

  /// A monitor whose times come from `wallClock` (by default the engine's per-round wall clock).
  public init(wallClock: @escaping @Sendable () -> Double = { TurnClock.engine.wallSeconds() }) {
    self.wallClock = wallClock
    self.startTime = wallClock()
  }

  /// Sets the listener addresses shown in the header.
  public func setListeners(_ addresses: [String]) { state.withLock { $0.listeners = addresses } }

  /// Records one answered client query with the hops it took (empty for cache hits).
  /// The log entry is formatted only when a snapshot is taken (names and codes as text cost
  /// ~1.7% of cold-resolution CPU when built for every query).
  public func record(client: String, question: Question, resolution: Resolution) {
    record(.text(client), question: question, resolution: resolution)
  }

  /// `record(client:question:resolution:)` for a client address, formatted only when a snapshot is taken.
  public func record(clientAddress: SocketAddress?, question: Question, resolution: Resolution) {
    record(
      clientAddress.map { .address(RawClientAddress($0)) } ?? .text("?"), question: question, resolution: resolution)
  }

  /// `record(clientAddress:question:resolution:)` for an address kept raw.
  func record(rawClient: RawClientAddress?, question: Question, resolution: Resolution) {
    record(rawClient.map { .address($0) } ?? .text("?"), question: question, resolution: resolution)
  }

  private func record(_ client: RecordedClient, question: Question, resolution: Resolution) {
    let item = ResolvedQuery(
      time: wallClock(), client: client, question: question, rcode: resolution.rcode, latencyMs: resolution.elapsedMs,
      cacheHit: resolution.fromCache, stale: resolution.stale, hops: resolution.hops)
    state.withLock { s in
      s.count(time: item.time, cacheHit: item.cacheHit, item: .resolved(item))
      s.count(hops: item.hops, time: item.time)
    }
  }

  /// Records hops made outside a client's resolution (a probe or re-test sent beside one):
  /// counted in the Privacy figures, no client query.
  public func record(backgroundHops hops: [Hop]) {
    let time = wallClock()
    state.withLock { $0.count(hops: hops, time: time) }
  }

  /// Records a prepared log entry; `qnames` are the names actually sent per hop (after minimisation).
  public func record(_ entry: QueryLogEntry, qnames: [String]? = nil) {
    state.withLock { s in
      s.count(time: entry.time, cacheHit: entry.cacheHit, item: .entry(entry))
      for (i, hop) in entry.hops.enumerated() {
        let qname = qnames.flatMap { i < $0.count ? $0[i] : nil } ?? entry.name
        s.count(
          hop: hop.transport, zone: NameText(hop.zone), qname: NameText(qname), server: hop.server, time: entry.time)
      }
    }
  }

  /// Records a client query answered from the packet cache; formatted only when a snapshot is taken.
  public func recordFastHit(client: SocketAddress, name: [UInt8], type: UInt16, rcode: UInt8) {
    recordFastHit(client: RawClientAddress(client), name: name, type: type, rcode: rcode)
  }

  /// `recordFastHit` for a client address kept raw (the UDP socket loop).
  func recordFastHit(client: RawClientAddress, name: [UInt8], type: UInt16, rcode: UInt8) {
    let hit = FastHit(time: wallClock(), client: client, name: name, type: type, rcode: rcode)
    state.withLock { s in
      s.clientQueries += 1
      s.cacheHits += 1
      s.perSecond.add(at: hit.time)
      s.append(.fastHit(hit))
    }
  }

  /// The monitor's own part of a snapshot.
  public func snapshot() -> MonitorData {
    let now = wallClock()
    // The raw items are copied under the lock and written out after it, so recording (on every
    // client query) does not wait for the text of the whole log and Privacy data.
    let (data, items, recorded, zones) = state.withLock { s in
      let perSecond = s.perSecond.values(now: now)
      // The last 10 complete seconds.
      let rate = Double(perSecond.dropLast().suffix(10).reduce(0, +)) / 10
      let items = s.log.count < Self.logCapacity ? s.log : Array(s.log[s.logNext...] + s.log[..<s.logNext])
      let recorded =
        s.leaks.count < Self.leakCapacity ? s.leaks : Array(s.leaks[s.leakNext...] + s.leaks[..<s.leakNext])
      let data = MonitorData(
        now: now, startTime: startTime, listeners: s.listeners, clientQueries: s.clientQueries, cacheHits: s.cacheHits,
        queryRate: rate, listener: listenerCounters.snapshot, queries: [],
        privacy: PrivacyData(
          cleartextHops: s.cleartextHops, encryptedHops: s.encryptedHops, byZone: [:],
          byServer: s.cleartextByServer, recent: [], cleartextSeries: s.cleartextSeries.values(now: now),
          encryptedSeries: s.encryptedSeries.values(now: now)))
      return (data, items, recorded, s.cleartextByZone)
    }
    var out = data
    out.queries = items.map(\.entry).reversed()
    out.privacy.recent = recorded.map(\.leak).reversed()
    // A zone recorded as a name and as the same text reads the same: counted once.
    out.privacy.byZone = Dictionary(zones.values.map { ($0.zone.description, $0.count) }, uniquingKeysWith: +)
    return out
  }
}

/// A log item: a full entry, or a resolved query or packet-cache hit kept raw until someone looks.
enum LogItem: Sendable {
  case entry(QueryLogEntry)
  case resolved(ResolvedQuery)
  case fastHit(FastHit)

  var entry: QueryLogEntry {
    switch self {
    case .entry(let e): return e
    case .resolved(let r): return r.entry
    case .fastHit(let h): return h.entry
    }
  }
}

/// A resolved client query as recorded on the hot path: the question and hops as they are.
struct ResolvedQuery: Sendable {
  var time: Double
  var client: RecordedClient
  var question: Question
  var rcode: RCode
  var latencyMs: Double
  var cacheHit: Bool
  var stale: Bool
  var hops: [Hop]

  var entry: QueryLogEntry {
    QueryLogEntry(
      time: time, client: client.text, name: question.name.description, type: question.type.description,
      rcode: rcode.description, latencyMs: latencyMs, cacheHit: cacheHit, stale: stale, hops: hops.map(\.summary))
  }
}

/// Who asked: a label (`lookup`) or a client address turned into text only when the log is read.
enum RecordedClient: Sendable {
  case text(String)
  case address(RawClientAddress)

  var text: String {
    switch self {
    case .text(let s): return s
    case .address(let a): return a.ipAddress ?? "?"
    }
  }
}

/// Cleartext hops to one zone (as spelled), with the zone to write out at a snapshot.
struct ZoneCount: Sendable {
  var zone: NameText
  var count = 0
}

/// A cleartext hop as recorded on the hot path: its names are written out at a snapshot.
struct RecordedLeak: Sendable {
  var time: Double
  var name: NameText
  var zone: NameText
  var server: String
  var transport: TransportKind

  var leak: CleartextLeak {
    CleartextLeak(time: time, name: name.description, zone: zone.description, server: server, transport: transport)
  }
}

/// A packet-cache hit as recorded on the hot path: no strings.
struct FastHit: Sendable {
  var time: Double
  var client: RawClientAddress
  var name: [UInt8]  // wire form, as the client spelled it
  var type: UInt16
  var rcode: UInt8

  var entry: QueryLogEntry {
    var labels: [[UInt8]] = []
    var i = 0
    while i < name.count, name[i] != 0, i + 1 + Int(name[i]) <= name.count {
      labels.append(Array(name[(i + 1)...(i + Int(name[i]))]))
      i += 1 + Int(name[i])
    }
    return QueryLogEntry(
      time: time, client: client.ipAddress ?? "?", name: DNSName(uncheckedLabels: labels).description,
      type: RRType(rawValue: type).description, rcode: RCode(rawValue: UInt16(rcode)).description, latencyMs: 0,
      cacheHit: true, hops: [])
  }
}

extension ResolverMonitor.State {
  /// Counts one client query and logs it.
  mutating func count(time: Double, cacheHit: Bool, item: LogItem) {
    clientQueries += 1
    if cacheHit { cacheHits += 1 }
    perSecond.add(at: time)
    append(item)
  }

  /// Counts a resolution's (or a background query's) `hops`, but not those that never left this
  /// machine (outcome `error`: no socket, no local port), which exposed nothing.
  mutating func count(hops: [Hop], time: Double) {
    for hop in hops where hop.outcome != TransportError.io("").outcome {
      count(hop: hop.transport, zone: hop.zoneText, qname: hop.qnameText, server: hop.server, time: time)
    }
  }

  /// Counts one hop; a cleartext one also goes to the leak list, with `qname` as the name sent.
  mutating func count(hop transport: TransportKind, zone: NameText, qname: NameText, server: String, time: Double) {
    guard transport.isCleartext else {
      encryptedHops += 1
      encryptedSeries.add(at: time)
      return
    }
    cleartextHops += 1
    cleartextByZone[zone.spelling, default: ZoneCount(zone: zone)].count += 1
    cleartextByServer[server, default: 0] += 1
    cleartextSeries.add(at: time)
    let leak = RecordedLeak(time: time, name: qname, zone: zone, server: server, transport: transport)
    if leaks.count < ResolverMonitor.leakCapacity {
      leaks.append(leak)
    } else {
      leaks[leakNext] = leak
    }
    leakNext = (leakNext + 1) % ResolverMonitor.leakCapacity
  }

  mutating func append(_ item: LogItem) {
    if log.count < ResolverMonitor.logCapacity {
      log.append(item)
    } else {
      log[logNext] = item
    }
    logNext = (logNext + 1) % ResolverMonitor.logCapacity
  }
}

/// The monitor's counters at one moment.
public struct MonitorData: Sendable, Codable, Hashable {
  public var now: Double
  public var startTime: Double
  public var listeners: [String]
  public var clientQueries: Int
  /// Client queries answered without any hop.
  public var cacheHits: Int
  /// Client queries per second over the last 10 s.
  public var queryRate: Double
  /// The client listener's counters.
  public var listener: ListenerStatistics
  /// The latest client queries, newest first.
  public var queries: [QueryLogEntry]
  public var privacy: PrivacyData
}

/// Cleartext exposure: every hop that went out in cleartext counts as a name shown to a server.
public struct PrivacyData: Sendable, Codable, Hashable {
  public var cleartextHops: Int
  public var encryptedHops: Int
  /// Cleartext hops per zone asked.
  public var byZone: [String: Int]
  /// Cleartext hops per server address.
  public var byServer: [String: Int]
  /// Latest names sent in cleartext, newest first.
  public var recent: [CleartextLeak]
  /// Cleartext hops per 10 s over the last 10 minutes, oldest first (60 values).
  public var cleartextSeries: [Int]
  /// Encrypted hops per 10 s over the same buckets.
  public var encryptedSeries: [Int]

  /// Share of hops that went in cleartext, 0...1 (0 when there were none).
  public var cleartextShare: Double {
    let total = cleartextHops + encryptedHops
    return total == 0 ? 0 : Double(cleartextHops) / Double(total)
  }
}

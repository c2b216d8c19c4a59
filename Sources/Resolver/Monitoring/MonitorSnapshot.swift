/// Everything a UI shows at one moment, as one immutable value: the monitor's counters, cache
/// statistics and the encryption state of every authoritative server. The dashboard draws from
/// it and `sotto ctl` prints it, so they can never disagree. Codable: the control socket sends it.
public struct MonitorSnapshot: Sendable, Codable, Hashable {
  public var stats: MonitorStats
  public var servers: [ServerSnapshot]
  /// Latest client queries, newest first.
  public var queries: [QueryLogEntry]

  public init(stats: MonitorStats, servers: [ServerSnapshot], queries: [QueryLogEntry]) {
    self.stats = stats
    self.servers = servers
    self.queries = queries
  }
}

/// Header numbers and the Privacy panel (the `stats` command).
public struct MonitorStats: Sendable, Codable, Hashable {
  public var now: Double
  public var startTime: Double
  public var listeners: [String]
  public var clientQueries: Int
  public var clientCacheHits: Int
  public var queryRate: Double
  /// The client listener's counters: refusals, drops and every cap that held a client back.
  public var listener: ListenerStatistics
  public var cache: CacheSnapshot
  public var encryption: EncryptionSnapshot
  public var privacy: PrivacyData
  /// Upstream Do53 replies dropped for a wrong ID or question, and queries that joined an
  /// identical one in flight instead of being sent.
  public var upstream = UpstreamSnapshot()

  public var uptime: Double { max(0, now - startTime) }
}

/// Upstream (authoritative-side) Do53 counters.
public struct UpstreamSnapshot: Sendable, Codable, Hashable {
  public var mismatchedReplies = 0
  public var coalescedQueries = 0
  /// Unparsable replies (bad compression pointers, datagrams cut at the receive buffer, ...).
  public var malformedReplies = 0
  /// Records dropped because they lie outside the zone of the server that sent them.
  public var outOfBailiwickRecords = 0
  /// CNAME/DNAME loops detected.
  public var aliasLoops = 0
  /// Resolutions stopped by the query, referral or time budget.
  public var budgetExhausted = 0
  /// Resolutions whose zone's servers all failed, restarted once after its delegation was
  /// fetched again from the parent.
  public var delegationRefreshes = 0
  /// DoT responses that could not be parsed.
  public var malformedDoTReplies = 0
  /// DoT responses dropped for an ID no query on the connection has, or another question (T-13).
  public var mismatchedDoTReplies = 0
  /// DoQ responses that broke RFC 9250 framing: unparsable, bad length, non-zero ID, other question.
  public var malformedDoQReplies = 0
  /// DoQ query streams reset by the server instead of answered (each a failed query, OE-37).
  public var resetDoQStreams = 0
  /// Upstream queries (any transport) that got no usable reply before their timeout; per server in
  /// `servers[].timeouts`.
  public var timeouts = 0
  /// Servers held as unresponsive right now; per server in `servers[].unresponsiveProbeIn`.
  public var unresponsiveServers = 0
  /// Zone steps failed at once because every server of the zone was held as unresponsive.
  public var heldZoneFailures = 0
  /// Probes sent to servers held as unresponsive (beside a zone's live servers or, with none
  /// left, by the resolution itself).
  public var unresponsiveProbes = 0
  /// Extra DoT connections opened beside a session's first while its queries overlapped.
  public var extraDoTConnections = 0
  /// Queries sent again without EDNS after a FORMERR or NOTIMP without OPT (RFC 6891 §6.2.2); the
  /// server is then asked without EDNS for 5 minutes.
  public var ednsFallbacks = 0
  /// Encrypted connections this machine could not set up (no descriptor, no local port, ...): not
  /// held against their servers, and the query not sent in cleartext to a known-good one.
  public var localConnectionFailures = 0
  /// Changes of this machine's own address seen (another network): tickets dropped and encrypted
  /// sessions closed each time (T-6, T-37).
  public var addressChanges = 0
  /// The Do53/TCP connection pool's counters.
  public var do53TCP = Do53TCPStatistics()
  public init(
    mismatchedReplies: Int = 0, coalescedQueries: Int = 0, malformedReplies: Int = 0, outOfBailiwickRecords: Int = 0,
    aliasLoops: Int = 0, budgetExhausted: Int = 0, malformedDoTReplies: Int = 0, mismatchedDoTReplies: Int = 0,
    malformedDoQReplies: Int = 0, resetDoQStreams: Int = 0, timeouts: Int = 0, delegationRefreshes: Int = 0,
    unresponsiveServers: Int = 0, heldZoneFailures: Int = 0, unresponsiveProbes: Int = 0, extraDoTConnections: Int = 0,
    localConnectionFailures: Int = 0, ednsFallbacks: Int = 0, addressChanges: Int = 0,
    do53TCP: Do53TCPStatistics = Do53TCPStatistics()
  ) {
    self.do53TCP = do53TCP
    self.addressChanges = addressChanges
    self.ednsFallbacks = ednsFallbacks
    self.localConnectionFailures = localConnectionFailures
    self.extraDoTConnections = extraDoTConnections
    self.unresponsiveProbes = unresponsiveProbes
    self.unresponsiveServers = unresponsiveServers
    self.heldZoneFailures = heldZoneFailures
    self.delegationRefreshes = delegationRefreshes
    self.resetDoQStreams = resetDoQStreams
    self.malformedDoTReplies = malformedDoTReplies
    self.mismatchedDoTReplies = mismatchedDoTReplies
    self.malformedDoQReplies = malformedDoQReplies
    self.timeouts = timeouts
    self.mismatchedReplies = mismatchedReplies
    self.coalescedQueries = coalescedQueries
    self.malformedReplies = malformedReplies
    self.outOfBailiwickRecords = outOfBailiwickRecords
    self.aliasLoops = aliasLoops
    self.budgetExhausted = budgetExhausted
  }

  enum CodingKeys: String, CodingKey {
    case mismatchedReplies, coalescedQueries, malformedReplies, outOfBailiwickRecords, aliasLoops, budgetExhausted
    case delegationRefreshes, malformedDoTReplies, mismatchedDoTReplies, malformedDoQReplies, resetDoQStreams
    case timeouts, unresponsiveServers, heldZoneFailures, unresponsiveProbes, extraDoTConnections
    case localConnectionFailures, ednsFallbacks, addressChanges, do53TCP
  }

  /// Decodes a snapshot; counters a `sotto` of another version did not send read as 0.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      mismatchedReplies: try c.counter(.mismatchedReplies), coalescedQueries: try c.counter(.coalescedQueries),
      malformedReplies: try c.counter(.malformedReplies), outOfBailiwickRecords: try c.counter(.outOfBailiwickRecords),
      aliasLoops: try c.counter(.aliasLoops), budgetExhausted: try c.counter(.budgetExhausted),
      malformedDoTReplies: try c.counter(.malformedDoTReplies),
      mismatchedDoTReplies: try c.counter(.mismatchedDoTReplies),
      malformedDoQReplies: try c.counter(.malformedDoQReplies), resetDoQStreams: try c.counter(.resetDoQStreams),
      timeouts: try c.counter(.timeouts), delegationRefreshes: try c.counter(.delegationRefreshes),
      unresponsiveServers: try c.counter(.unresponsiveServers), heldZoneFailures: try c.counter(.heldZoneFailures),
      unresponsiveProbes: try c.counter(.unresponsiveProbes),
      extraDoTConnections: try c.counter(.extraDoTConnections),
      localConnectionFailures: try c.counter(.localConnectionFailures), ednsFallbacks: try c.counter(.ednsFallbacks),
      addressChanges: try c.counter(.addressChanges),
      do53TCP: try c.decodeIfPresent(Do53TCPStatistics.self, forKey: .do53TCP) ?? Do53TCPStatistics())
  }
}

/// Cache statistics.
public struct CacheSnapshot: Sendable, Codable, Hashable {
  public var entries: Int
  public var hits: Int
  public var misses: Int
  public var negativeHits: Int
  public var evictions: Int
  /// Answers given with expired records (serve-stale).
  public var staleHits: Int

  public init(_ s: CacheStatistics) {
    entries = s.entries
    hits = s.hits
    misses = s.misses
    negativeHits = s.negativeHits
    evictions = s.evictions
    staleHits = s.staleHits
  }

  /// Share of cache lookups answered, 0...1.
  public var hitRate: Double {
    let total = hits + misses + negativeHits
    return total == 0 ? 0 : Double(hits + negativeHits) / Double(total)
  }
}

/// Encryption totals over all servers (OE-43).
public struct EncryptionSnapshot: Sendable, Codable, Hashable {
  public var enabled: Bool
  public var transports: [String]
  public var servers: Int
  /// Authoritative queries by transport name ("Do53/UDP", "DoT", ...).
  public var queries: [String: Int]
  public var probes: ProbeCounters
  /// Cleartext sent to servers known good (must stay 0).
  public var cleartextWhileGood: Int
  /// Servers by DoT phase name ("established", "damped", ...).
  public var serversByState: [String: Int]

  /// Share of authoritative queries that went encrypted, 0...1.
  public var encryptedShare: Double {
    let total = queries.values.reduce(0, +)
    guard total > 0 else { return 0 }
    let plain = queries.filter { TransportKind(rawValue: $0.key)?.isCleartext ?? true }.values.reduce(0, +)
    return Double(total - plain) / Double(total)
  }
}

/// One authoritative server address (the `servers` command, a row of the Servers panel).
public struct ServerSnapshot: Sendable, Codable, Hashable {
  public var address: String
  public var nsNames: [String]
  public var zones: [String]
  public var dot: TransportSnapshot
  /// Nil until DoQ exists in this build (the panel shows "-").
  public var doq: TransportSnapshot?
  /// Queries by transport name.
  public var queries: [String: Int]
  /// Smoothed RTT in ms, nil when never measured.
  public var srttMs: Double?
  /// Queries to this server that timed out (any transport), e.g. a Do53 reply from the wrong
  /// source port, which the connected socket never delivers.
  public var timeouts = 0
  /// Seconds until a server held as unresponsive may be probed (0: the next query probes it);
  /// nil when it is not held.
  public var unresponsiveProbeIn: Double?
  public var cleartextWhileGood: Int
  public var firstSeen: Double
  public var lastSeen: Double
  /// How the next query to this server would go, and why ("DoT: session established").
  public var reason: String
  /// Encryption events of this server, newest first (at most `ServerRecord.historyLimit`).
  public var history: [ServerEvent]

  public init(
    address: String, nsNames: [String], zones: [String], dot: TransportSnapshot, doq: TransportSnapshot?,
    queries: [String: Int], srttMs: Double?, cleartextWhileGood: Int, firstSeen: Double, lastSeen: Double,
    reason: String,
    history: [ServerEvent] = [], timeouts: Int = 0, unresponsiveProbeIn: Double? = nil
  ) {
    self.timeouts = timeouts
    self.unresponsiveProbeIn = unresponsiveProbeIn
    self.address = address
    self.nsNames = nsNames
    self.zones = zones
    self.dot = dot
    self.doq = doq
    self.queries = queries
    self.srttMs = srttMs
    self.cleartextWhileGood = cleartextWhileGood
    self.firstSeen = firstSeen
    self.lastSeen = lastSeen
    self.reason = reason
    self.history = history
  }

  /// All probe counters of the encrypted transports added up.
  public var probes: ProbeCounters {
    var p = dot.probes
    if let q = doq?.probes {
      p.started += q.started
      p.succeeded += q.succeeded
      p.failed += q.failed
      p.timedOut += q.timedOut
    }
    return p
  }
}

/// The RFC 9539 state of one transport at one server.
public struct TransportSnapshot: Sendable, Codable, Hashable {
  /// `unknown`, `probing`, `established`, `good-idle`, `good-stale`, `damped`, `retryable`.
  public var phase: String
  public var dampedUntil: Double?
  public var probes: ProbeCounters
  public var failures: [String: Int]
  public var lastFailure: String?
  public var certificate: CertificateCheck?
  public var tlsVersion: String?
  public var handshakeMs: Double?
  public var resumed: Bool
  /// The server's edns-tcp-keepalive TIMEOUT in its last response, seconds (DoT; RFC 7828).
  public var keepalive: Double?

  public init(
    phase: String, dampedUntil: Double?, probes: ProbeCounters, failures: [String: Int], lastFailure: String?,
    certificate: CertificateCheck?, tlsVersion: String?, handshakeMs: Double?, resumed: Bool, keepalive: Double? = nil
  ) {
    self.phase = phase
    self.dampedUntil = dampedUntil
    self.probes = probes
    self.failures = failures
    self.lastFailure = lastFailure
    self.certificate = certificate
    self.tlsVersion = tlsVersion
    self.handshakeMs = handshakeMs
    self.resumed = resumed
    self.keepalive = keepalive
  }

  /// "valid", "expired, wrong-name", or nil when no certificate was seen.
  public var certificateNote: String? {
    guard let c = certificate else { return nil }
    return c.isValid ? "valid" : c.problems.joined(separator: ", ")
  }
}

extension TransportSnapshot {
  init(_ st: TransportState, now: Double, settings: EncryptionSettings) {
    let phase = st.phase(at: now, settings: settings)
    self.phase = phase.name
    if case .damped(let until) = phase { dampedUntil = until } else { dampedUntil = nil }
    probes = st.probes
    failures = st.failures
    lastFailure = st.lastFailure
    certificate = st.certificate
    tlsVersion = st.tlsVersion
    handshakeMs = st.handshakeMs
    resumed = st.resumed
    keepalive = st.keepalive
  }
}

extension MonitorSnapshot {
  /// Combines the parts; `table` is nil with encryption off.
  public static func make(
    monitor: MonitorData, cache: CacheStatistics, table: EncryptionTable?, srtt: (String) -> Double?,
    timeouts: (String) -> Int = { _ in 0 }, probeIn: (String) -> Double? = { _ in nil },
    upstream: UpstreamSnapshot = UpstreamSnapshot()
  ) -> MonitorSnapshot {
    let now = monitor.now
    var servers: [ServerSnapshot] = []
    var byState: [String: Int] = [:]
    if let table {
      let hasDoQ = table.settings.transports.contains(.doq)
      // Each server once, by its best phase over the transports in use: with DoQ preferred, a
      // server with a DoQ session is "established", not its DoT phase ("unknown").
      let rank = ["established", "good-idle", "good-stale", "probing", "retryable", "damped", "unknown"]
      for r in table.servers.values {
        let dot = TransportSnapshot(r.state(.dot), now: now, settings: table.settings)
        let phases = table.settings.transports.map { t in
          t == .dot ? dot.phase : TransportSnapshot(r.state(t), now: now, settings: table.settings).phase
        }
        let best = phases.min { (rank.firstIndex(of: $0) ?? rank.count) < (rank.firstIndex(of: $1) ?? rank.count) }
        byState[best ?? dot.phase, default: 0] += 1
        let reason: String
        switch table.decide(r.address, now: now) {
        case .useSession(_, let why), .connectAndUse(_, let why): reason = why.description
        case .do53(let why, _): reason = why.description
        }
        servers.append(
          ServerSnapshot(
            address: r.address, nsNames: r.nsNames.sorted(), zones: r.zones.sorted(), dot: dot,
            doq: hasDoQ ? TransportSnapshot(r.state(.doq), now: now, settings: table.settings) : nil,
            queries: Dictionary(uniqueKeysWithValues: r.queries.map { ($0.key.rawValue, $0.value) }),
            srttMs: srtt(r.address), cleartextWhileGood: r.cleartextWhileGood, firstSeen: r.firstSeen,
            lastSeen: r.lastSeen, reason: reason, history: r.history.reversed(), timeouts: timeouts(r.address),
            unresponsiveProbeIn: probeIn(r.address)))
      }
    }
    servers.sort { $0.address < $1.address }
    let totals = table?.totals ?? EncryptionTotals()
    let encryption = EncryptionSnapshot(
      enabled: table?.settings.enabled ?? false, transports: table?.settings.transports.map(\.rawValue) ?? [],
      servers: totals.servers,
      queries: Dictionary(uniqueKeysWithValues: totals.queries.map { ($0.key.rawValue, $0.value) }),
      probes: totals.probes, cleartextWhileGood: totals.cleartextWhileGood, serversByState: byState)
    var stats = MonitorStats(
      now: now, startTime: monitor.startTime, listeners: monitor.listeners, clientQueries: monitor.clientQueries,
      clientCacheHits: monitor.cacheHits, queryRate: monitor.queryRate, listener: monitor.listener,
      cache: CacheSnapshot(cache),
      encryption: encryption, privacy: monitor.privacy)
    stats.upstream = upstream
    return MonitorSnapshot(stats: stats, servers: servers, queries: monitor.queries)
  }
}

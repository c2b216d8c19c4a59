import Logging
import NIOCore
import Synchronization

/// What every resolution shares: configuration, cache, server statistics and the upstream seam.
final class ResolverCore: Sendable {
  let configuration: ResolverConfiguration
  let cache: DNSCache
  let selection: ServerSelection
  let exchanger: any UpstreamExchanger
  /// `exchanger` when it is Sotto's encryption policy or plain Do53, to be called as its own type:
  /// a call through the protocol is followed by a hop back to the caller's executor, and under the
  /// listeners' executor preference each hop looks the preference up under a lock.
  let policyExchanger: EncryptionPolicy?
  let plainExchanger: Do53Exchanger?
  let failureCache: FailureCache
  /// Questions just answered stale because their refresh failed: answered stale again without a
  /// new refresh until the failure recheck interval has passed.
  let staleRecheck: FailureCache
  /// Zones (as `zone NS` questions) whose delegation was refreshed after all their servers
  /// failed: not again within the failure recheck interval, so a dead zone asked for
  /// many names costs its parent one more query per interval, not one per name.
  let refreshedDelegations: FailureCache
  /// Questions whose refresh goes on after a stale answer went out (R-43 client response timer):
  /// answered stale at once meanwhile, not refreshed again.
  let refreshing = StateLock<Set<Question>>([])
  /// How many of those refreshes go on after their client got the stale answer.
  let backgroundRefreshes = Atomic<Int>(0)
  let time: any TimeSource
  let logger: Logger
  let counters = HardeningCounters()
  let endpoints = EndpointMemo()
  /// Each zone's server candidates from the cache, kept while the cache confirms them.
  let zoneServers = ZoneServerMemo()
  /// Hops made outside a client's resolution (probes and re-tests sent beside one).
  let backgroundHops = HopSink()
  /// Servers asked without EDNS for now, after they refused it (T-46).
  let ednsFallback: EDNSFallbackMemo

  init(configuration: ResolverConfiguration, exchanger: any UpstreamExchanger, time: any TimeSource, logger: Logger) {
    self.configuration = configuration
    self.cache = DNSCache(configuration: configuration.cache, time: time)
    self.selection = ServerSelection(
      unknownTimeoutMs: configuration.queryTimeoutMs,
      rule: ServerHealth.Rule(
        timeouts: configuration.unresponsiveAfter, maxProbeGap: configuration.staleRecheckInterval),
      time: time)
    self.exchanger = exchanger
    (self.policyExchanger, self.plainExchanger) = exchanger.asKnown
    // from 5 s, doubling while a question keeps failing, to at most 5 min.
    self.failureCache = FailureCache(
      ttl: configuration.failureCacheTTL, maxTTL: configuration.failureCacheMaxTTL, time: time)
    self.staleRecheck = FailureCache(ttl: configuration.staleRecheckInterval, time: time)
    self.refreshedDelegations = FailureCache(ttl: configuration.staleRecheckInterval, time: time)
    self.ednsFallback = EDNSFallbackMemo(time: time)
    self.time = time
    self.logger = logger
  }
}

/// The recursive resolver: answers questions from the cache or by iterating from the root.
/// Identical concurrent questions share one resolution.
public final class RecursiveResolver: QueryResolving {
  let core: ResolverCore
  private let inflight = Coalescer<Question, Resolution>()

  /// A resolver that talks Do53 through `group`.
  public convenience init(
    configuration: ResolverConfiguration, group: any EventLoopGroup, logger: Logger = Logger(label: "sotto")
  ) {
    let exchanger = Do53Exchanger(transport: Do53Transport(group: group), time: SystemTimeSource())
    self.init(configuration: configuration, exchanger: exchanger, time: TurnTimeSource(), logger: logger)
  }

  /// A resolver with an explicit upstream exchanger and clock (tests, encryption policy).
  public init(
    configuration: ResolverConfiguration, exchanger: any UpstreamExchanger, time: any TimeSource, logger: Logger
  ) {
    core = ResolverCore(configuration: configuration, exchanger: exchanger, time: time, logger: logger)
  }

  /// The shared cache (for flushing and statistics).
  public var cache: DNSCache { core.cache }
  /// An operator's flush: cached resolution failures and stale-answer rechecks go too,
  /// so a zone just fixed is asked at once, not after the failure's 5 s.
  public func forgetFailures() {
    core.failureCache.removeAll()
    core.staleRecheck.removeAll()
  }
  /// Counters of hostile upstream behaviour (out-of-bailiwick records, loops, budgets).
  public var hardening: HardeningCounters { core.counters }
  /// Per-server smoothed RTTs.
  public var serverSelection: ServerSelection { core.selection }
  /// Hops made outside a client's resolution (probes and re-tests sent beside one).
  public var backgroundHops: HopSink { core.backgroundHops }
  /// Serve-stale refreshes going on after their client got the stale answer.
  public var backgroundResolutions: Int { max(0, core.backgroundRefreshes.load(ordering: .relaxed)) }

  public nonisolated(nonsending) func resolve(_ question: Question) async -> Resolution {
    if let local = LocalAnswers.answer(question) { return local }
    let key = Self.coalescingKey(question)
    return await inflight.run(key) { await resolveUncoalesced(question, key: key) }.value
  }

  public func isResolving(_ question: Question) -> Bool { inflight.isRunning(Self.coalescingKey(question)) }

  /// Identical questions (the name compared case-insensitively) share one resolution.
  static func coalescingKey(_ question: Question) -> Question {
    Question(name: question.name.lowercased(), type: question.type, qclass: question.qclass)
  }

  nonisolated(nonsending) func resolveUncoalesced(_ question: Question, key: Question) async -> Resolution {
    guard question.qclass == .in else { return Resolution(rcode: .refused, failureReason: "only class IN is served") }
    if core.configuration.cache.maxStale > 0 { return await resolveServingStale(question, key: key) }
    return await refresh(question, key: key)
  }

  /// Resolves `question` by iteration (after the cache; `looked`: the cache's answer for it,
  /// already looked up); with serve-stale on, a failure is answered with the expired data still
  /// kept, if any (RFC 8767).
  nonisolated(nonsending) func refresh(_ question: Question, key: Question, looked: CacheLook? = nil) async
    -> Resolution
  {
    // The latency shown (query log, dashboard, `lookup`) is read from the clock itself: the
    // per-round clock of deadlines would show a cache hit as 0 ms.
    let clock = SystemTimeSource()
    let startedAt = clock.now()
    let run = ResolutionRun(core: core)
    var outcome = await run.resolve(question, depth: 0, looked: looked)
    if case .failure = outcome, let again = await run.restartWithFreshDelegations(question) { outcome = again }
    if core.configuration.cache.maxStale > 0, case .failure(let why) = outcome,
      var stale = await staleResolution(question)
    {
      // The refresh failed (no authority answered, or none with NOERROR/NXDOMAIN, R-44), so the
      // expired data still kept is the answer.
      // Not after a failure of this machine's own: the next query tries the servers again.
      if !run.sawLocalFailure { core.staleRecheck.insert(key) }
      core.logger.debug("stale answer for \(question): \(why)")
      stale.hops = run.hops
      stale.fromCache = false
      stale.failureReason = why
      stale.elapsedMs = (clock.now() - startedAt) * 1000
      return stale
    }
    var r = Self.resolution(outcome)
    if case .failure(let why) = outcome { core.logger.debug("SERVFAIL for \(question): \(why)") }
    Self.clampTTLs(&r, core.configuration.cache)
    r.hops = run.hops
    r.fromCache = run.hops.isEmpty && r.rcode != .servFail
    r.elapsedMs = (clock.now() - startedAt) * 1000
    return r
  }

  /// for what the client is told: a record's TTL is at most the cache's maxTTL, a
  /// negative answer's SOA at most its negative TTL (min of SOA TTL, MINIMUM, maxNegativeTTL),
  /// so neither the client nor the packet cache holds them longer than the resolver would. TTLs
  /// are only lowered (a cache hit's decayed TTL is not raised back to minTTL); records already
  /// in range are not written (no copy of the sections).
  static func clampTTLs(_ r: inout Resolution, _ c: CacheConfiguration) {
    for i in r.answer.indices where r.answer[i].ttl > c.maxTTL { r.answer[i].ttl = c.maxTTL }
    let negativeCap = min(c.maxTTL, c.maxNegativeTTL)
    for i in r.authority.indices {
      let rr = r.authority[i]
      let cap = rr.type == .soa ? NegativeAnswer.ttl(for: rr, cap: negativeCap) ?? negativeCap : c.maxTTL
      if rr.ttl > cap { r.authority[i].ttl = cap }
    }
  }

  /// The client-facing form of a resolution's outcome.
  static func resolution(_ outcome: NameOutcome) -> Resolution {
    var r: Resolution
    switch outcome {
    case .answer(let rrs): r = Resolution(rcode: .noError, answer: rrs)
    case .alias(let chain, _): r = Resolution(rcode: .noError, answer: chain)
    case .nxdomain(let chain, let soa):
      r = Resolution(rcode: .nxDomain, answer: chain, authority: soa.map { [$0] } ?? [])
    case .nodata(let chain, let soa): r = Resolution(rcode: .noError, answer: chain, authority: soa.map { [$0] } ?? [])
    case .yxdomain(let chain): r = Resolution(rcode: .yxDomain, answer: chain)
    case .failure(let why): r = Resolution(rcode: .servFail, failureReason: why)
    }
    return r
  }
}

/// Names answered without asking anyone: `localhost.` and below (RFC 6761 §6.3).
enum LocalAnswers {
  static let localhost = DNSName(uncheckedLabels: [Array("localhost".utf8)])

  static func answer(_ q: Question) -> Resolution? {
    guard q.name.isSubdomain(of: localhost), q.qclass == .in else { return nil }
    var rrs: [ResourceRecord] = []
    if q.type == .a || q.type == .any, let a = IPv4Address("127.0.0.1") {
      rrs.append(ResourceRecord(name: q.name, type: .a, ttl: 0, rdata: .a(a)))
    }
    if q.type == .aaaa || q.type == .any, let a = IPv6Address(octets: [UInt8](repeating: 0, count: 15) + [1]) {
      rrs.append(ResourceRecord(name: q.name, type: .aaaa, ttl: 0, rdata: .aaaa(a)))
    }
    return Resolution(rcode: .noError, answer: rrs, fromCache: true)
  }
}

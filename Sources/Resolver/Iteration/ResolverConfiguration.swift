/// Limits on the work one client query may cause (resolver-core §12).
public struct ResolutionLimits: Sendable {
  /// Upstream queries per client request.
  public var maxQueries = 100
  /// Referral steps per resolution.
  public var maxReferrals = 30
  /// Nesting depth of NS-address sub-resolutions.
  public var maxDepth = 7
  /// NS names resolved per zone when no glue is usable (NXNSAttack guard).
  public var maxNSNamesPerZone = 5
  /// CNAME/DNAME links per client query.
  public var maxChain = 10
  /// Overall deadline for one client query, seconds; SERVFAIL after it. R-43: the query
  /// resolution timer is 10–30 s (RFC 8767 §5); 10, as BIND's resolver-query-timeout.
  public var deadline: Double = 10.0
  public init() {}
}

/// Everything the resolver core needs to know; defaults are those of a production resolver.
public struct ResolverConfiguration: Sendable {
  public var rootHints: RootHints = .iana
  /// Ask the hints for `. NS` before the first resolution and whenever the root NS set expires.
  public var primeRoot = true
  /// Query authoritative servers on loopback (labs, tests, the demo). Off by default like Unbound.
  public var allowLoopback = false
  /// Destination port for Do53 to every authoritative server.
  public var do53Port = 53
  /// RFC 9539 opportunistic encryption settings (DoT/DoQ port, timers, caps).
  public var encryption = EncryptionSettings()
  /// QNAME minimisation (RFC 9156), on by default.
  public var qnameMinimisation = true
  /// Strict minimisation: no un-minimised retry when every server fails a minimised query.
  public var qnameMinimisationStrict = false
  /// Accept out-of-bailiwick glue for a referral's NS names (off: R-7 in-bailiwick glue only).
  public var relaxedGlue = false
  /// Initial retransmit timeout for servers never heard from, milliseconds.
  public var queryTimeoutMs: Double = 800
  /// Passes over a zone's servers before giving up on the zone.
  public var queryRetries = 2
  /// Do53 timeouts in a row of one kind of query (A, AAAA, other; over at least 2 s, no reply
  /// between) after which a server is held as unresponsive to that kind: resolutions that start
  /// later leave it out but for probes 1 s on, then at doubling gaps up to
  /// `staleRecheckInterval` (R-24, RFC 9520 §3.2; `ServerHealth`); 0: never held.
  public var unresponsiveAfter = 3
  /// False when the host has no route to global IPv6 addresses: those servers are skipped at once.
  public var ipv6Routable = true
  /// False when the host has no route to global IPv4 addresses: those servers are skipped at once.
  public var ipv4Routable = true
  /// EDNS(0) UDP payload size advertised upstream.
  public var ednsBufferSize: UInt16 = 1232
  public var useIPv4 = true
  public var useIPv6 = true
  public var cache = CacheConfiguration()
  public var limits = ResolutionLimits()
  /// How long a failed (name, type) is answered SERVFAIL without new upstream queries, seconds.
  public var failureCacheTTL: Double = 5
  /// The longest a question that keeps failing is answered SERVFAIL from the failure cache: its
  /// span doubles from `failureCacheTTL` each time it fails again soon after, seconds.
  public var failureCacheMaxTTL: Double = 300
  /// Serve-stale's failure recheck: after a refresh failed and the question was answered
  /// stale, it is answered stale without a new refresh for this many seconds.
  public var staleRecheckInterval: Double = 30
  /// Serve-stale's client response timer: a question with stale data whose refresh has not
  /// finished after this many seconds is answered stale while the refresh goes on; 0: never.
  public var staleAnswerAfter: Double = 1.8
  /// Refreshes going on after a stale answer at most; past it a question with stale data is
  /// answered stale at once and not refreshed (an outage must not start one refresh per name).
  public var maxBackgroundRefreshes = 64
  /// Servers whose smoothed RTTs differ by at most this many milliseconds are comparable; among
  /// them one with working encryption is chosen first.
  public var privacyMarginMs: Double = 50
  public init() {}
}

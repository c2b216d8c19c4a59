import Logging
import NIOCore

/// The resolver with everything it runs on: Do53, the RFC 9539 policy with its DoT connector, and
/// the state file. `sotto lookup`, `sotto serve` and the dashboard all build one of these.
public final class ResolverStack: Sendable {
  public let resolver: RecursiveResolver
  /// The encryption policy, nil with encryption off.
  public let policy: EncryptionPolicy?
  public let store: EncryptionStore?
  /// Client queries, the query log and cleartext exposure; give it to the `Listener`.
  public let monitor = ResolverMonitor()
  /// Do53 to authoritative servers (its counters feed the snapshot).
  let do53Transport: Do53Transport
  /// Malformed and mismatched DoT/DoQ responses (shared by both connectors).
  let encryptedReplies = EncryptedReplyCounters()
  let periodicSave: Task<Void, Never>?

  /// Builds the stack; loads `stateFile` if given (a corrupt file is reported and moved aside).
  public init(
    configuration: ResolverConfiguration, stateFile: String?, saveInterval: Double = 60, group: any EventLoopGroup,
    logger: Logger
  ) throws {
    let time = SystemTimeSource()
    let do53 = Do53Exchanger(transport: Do53Transport(group: group), time: time)
    self.do53Transport = do53.transport
    let store = stateFile.map { EncryptionStore(path: $0, logger: logger) }
    var exchanger: any UpstreamExchanger = Do53Exchanger(
      transport: do53.transport, time: time, reason: "Do53: encryption off")
    var policy: EncryptionPolicy?
    if configuration.encryption.enabled {
      // One store for both transports: one parse of a CA bundle at most, and one verdict.
      let trust = try TrustStore(
        extraCAFile: configuration.encryption.extraCAFile, warn: { logger.warning("\($0)") })
      let context = try DoTClientContext(trust: trust)
      var connectors: [any EncryptedConnector] = [
        DoTConnector(
          context: context, counters: encryptedReplies, maxConnections: configuration.encryption.dotConnections,
          lanesMinRTT: .nanoseconds(Int64(configuration.encryption.dotConnectionsMinRTTMs * 1e6)))
      ]
      connectors.append(try DoQConnector(trust: trust, group: group, counters: encryptedReplies))
      let p = EncryptionPolicy(
        settings: configuration.encryption, do53: do53, connectors: connectors,
        saved: store?.load(network: do53.transport.addressWatch.fingerprint()) ?? [], time: time,
        addressWatch: do53.transport.addressWatch, logger: logger)
      policy = p
      exchanger = p
    }
    self.policy = policy
    self.store = store
    // The cache and deadlines read the engine's per-round clock; round-trip times the clock itself.
    self.resolver = RecursiveResolver(
      configuration: configuration, exchanger: exchanger, time: TurnTimeSource(), logger: logger)
    if let store, let policy, saveInterval > 0 {
      periodicSave = store.savePeriodically(policy, every: saveInterval)
    } else {
      periodicSave = nil
    }
    let monitor = self.monitor
    resolver.backgroundHops.connect { monitor.record(backgroundHops: $0) }
  }

  /// Waits up to `probeWait` seconds for probes in flight, closes sessions cleanly and saves state.
  public func shutdown(probeWait: Double) async {
    periodicSave?.cancel()
    guard let policy else { return }
    if probeWait > 0 { await policy.waitForProbes(upTo: probeWait) }
    policy.closeAll()
    store?.save(policy)
  }

  /// Everything the dashboard and `sotto ctl` show, as one immutable value.
  public func snapshot() -> MonitorSnapshot {
    let selection = resolver.serverSelection
    return MonitorSnapshot.make(
      monitor: monitor.snapshot(), cache: resolver.cache.statistics, table: policy?.table,
      srtt: { selection.smoothedRTT(server: $0) }, timeouts: { selection.timeouts(server: $0) },
      probeIn: { selection.probeIn(server: $0) },
      upstream: UpstreamSnapshot(
        mismatchedReplies: do53Transport.mismatchedResponses,
        coalescedQueries: do53Transport.coalescedQueries + (policy?.coalescedQueries ?? 0),
        malformedReplies: do53Transport.malformedResponses,
        outOfBailiwickRecords: resolver.hardening.outOfBailiwickRecords, aliasLoops: resolver.hardening.aliasLoopCount,
        budgetExhausted: resolver.hardening.budgetExhaustedCount, malformedDoTReplies: encryptedReplies.malformedDoT,
        mismatchedDoTReplies: encryptedReplies.mismatchedDoT, malformedDoQReplies: encryptedReplies.malformedDoQ,
        resetDoQStreams: encryptedReplies.resetDoQStreams,
        timeouts: selection.totalTimeouts, delegationRefreshes: resolver.hardening.delegationRefreshCount,
        unresponsiveServers: selection.heldServers, heldZoneFailures: resolver.hardening.heldZoneFailureCount,
        unresponsiveProbes: selection.probesSent, extraDoTConnections: encryptedReplies.extraDoTConnections,
        localConnectionFailures: policy?.localConnectionFailures ?? 0,
        ednsFallbacks: resolver.hardening.ednsFallbackCount, addressChanges: policy?.addressChanges ?? 0,
        do53TCP: do53Transport.tcpStatistics))
  }
}

// MARK: - Operator actions (dashboard keys, `sotto ctl`)

extension ResolverStack {
  /// Empties the cache (and the cached resolution failures); returns the number of entries removed.
  @discardableResult
  public func flushCache() -> Int {
    resolver.forgetFailures()
    return resolver.cache.flushAll()
  }

  /// Removes `name` (and with `subtree` everything below it) from the cache, with any NXDOMAIN
  /// cached for a name above it that covers it (RFC 8020) and the cached resolution failures;
  /// returns how many entries.
  @discardableResult
  public func flush(name: DNSName, subtree: Bool = true) -> Int {
    resolver.forgetFailures()
    return subtree ? resolver.cache.flush(subtree: name) : resolver.cache.flush(name: name)
  }

  /// Removes every negative answer from the cache (and the cached resolution failures); returns
  /// how many entries.
  @discardableResult
  public func flushNegative() -> Int {
    resolver.forgetFailures()
    return resolver.cache.flushNegative()
  }

  /// Operator override: ends damping for `ip` and probes its encrypted transports now (see
  /// `EncryptionPolicy.probeNow`). Nil when encryption is off or the address is unknown.
  public func probe(ip: String) -> ProbeNowOutcome? { policy?.probeNow(ip) }

  /// Forgets the encryption state of `ip` and closes its sessions. False when unknown.
  public func forget(ip: String) -> Bool { policy?.forget(ip) ?? false }
}

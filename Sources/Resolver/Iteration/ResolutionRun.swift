import Logging
import NIOCore

/// The answer to one name/type inside a resolution, before it becomes a client `Resolution`.
enum NameOutcome {
  case answer([ResourceRecord])
  case alias([ResourceRecord], target: DNSName)
  case nxdomain([ResourceRecord], soa: ResourceRecord?)
  case nodata([ResourceRecord], soa: ResourceRecord?)
  case yxdomain([ResourceRecord])
  case failure(String)
}

/// One client query's resolution: the RFC 1034 §5.3.3 loop with QNAME minimisation,
/// its budgets (§12) and its trace. Lives inside one task; not shared.
final class ResolutionRun {
  let core: ResolverCore
  let started: Double
  var hops: [Hop] = []
  var queriesSent = 0
  var referrals = 0
  /// Questions being resolved up the current chain, for delegation-loop detection.
  var active: Set<Question> = []
  /// Zones whose server addresses are being resolved up the current chain.
  var activeZones: Set<DNSName> = []
  /// Server addresses skipped because policy forbids them (loopback without allowLoopback, R-10).
  var skippedByPolicy = 0
  /// True while the root priming query is under way.
  var priming = false
  /// Serve-stale (RFC 8767): answer from the cache only, expired entries still kept included;
  /// nothing is sent.
  var staleOnly = false
  /// Zones whose servers were all asked and none gave a usable reply.
  var unansweredZones: [DNSName] = []
  /// Set by `ask` when every server of the zone was held as unresponsive.
  var allHeld = false
  /// Set by `ask` to the local error when every server it sent to failed for want of something
  /// of this machine's (no socket, no local port: a `.io` leg); nil otherwise.
  var failedLocally: String?
  /// Whether any zone step of this run failed that way: its failures are not cached, as
  /// they say nothing about the name or its servers.
  var sawLocalFailure = false
  /// Questions this run put in the failure cache.
  var failuresCached: [Question] = []
  /// Set once the run restarted after refreshing delegations (R-43: once per resolution).
  var restarted = false
  /// RRsets with TTL 0 this run learned: the cache keeps none, but this resolution uses them
  /// ("for this transaction only", R-15): a referral's NS set and glue, an NS name's address.
  /// Without them a zone delegated with TTL 0 was unreachable.
  var transient: [CacheKey: [RData]] = [:]

  init(core: ResolverCore) {
    self.core = core
    self.started = core.time.now()
  }

  var limits: ResolutionLimits { core.configuration.limits }
  var overDeadline: Bool { core.time.now() - started > limits.deadline }

  /// Resolves a question completely, following CNAME/DNAME chains across zones.
  /// `looked` is the cache's answer for the question itself when the caller already looked.
  nonisolated(nonsending) func resolve(_ question: Question, depth: Int, looked: CacheLook? = nil) async -> NameOutcome
  {
    var chain: [ResourceRecord] = []
    var name = question.name
    // The question's name is checked apart, so a resolution without CNAMEs allocates no set.
    var seen: Set<DNSName> = []
    var looked = looked
    while chain.count <= limits.maxChain * 2 {
      let outcome = await resolveName(name, question.type, depth: depth, looked: looked)
      looked = nil
      switch outcome {
      case .answer(let rrs): return .answer(chain + rrs)
      case .nxdomain(let c, let soa): return .nxdomain(chain + c, soa: soa)
      case .nodata(let c, let soa): return .nodata(chain + c, soa: soa)
      case .yxdomain(let c): return .yxdomain(chain + c)
      case .failure: return outcome
      case .alias(let c, let target):
        chain += c
        let links = chain.filter { $0.type == .cname }.count
        if target == question.name || seen.contains(target) {
          core.counters.aliasLoops.increment()
          return .failure("CNAME/DNAME loop at \(target)")
        }
        if links > limits.maxChain {
          core.counters.budgetExhausted.increment()
          return .failure("CNAME chain longer than \(limits.maxChain)")
        }
        seen.insert(target)
        name = target
      }
    }
    return .failure("CNAME chain longer than \(limits.maxChain)")
  }

  /// Answers one name from the cache if possible (`looked`: the cache's answer, already looked
  /// up), otherwise iterates from the closest known cut.
  nonisolated(nonsending) func resolveName(
    _ name: DNSName, _ type: RRType, depth: Int, looked: CacheLook? = nil
  ) async -> NameOutcome {
    if let cached = cachedOutcome(name, type, looked: looked) { return cached }
    if staleOnly { return .failure("no stale data for \(name) \(type)") }
    let key = Question(name: name.lowercased(), type: type)
    if core.failureCache.contains(key) { return .failure("cached failure for \(name) \(type) (R-24)") }
    let outcome = await iterate(name, type, depth: depth)
    // A sub-resolution (an NS name's address) cut short by this run's query or referral budget,
    // spent mostly on other names, says nothing about the name: another client's resolution of
    // it starts with a whole budget (R-24 caches failures of the name or its servers only).
    let cutByBudget = depth > 0 && (queriesSent >= limits.maxQueries || referrals > limits.maxReferrals)
    if case .failure = outcome, !sawLocalFailure, !cutByBudget {
      core.failureCache.insert(key)
      failuresCached.append(key)
    }
    return outcome
  }

  /// R-43 (RFC 8767 §5): when no authority of a zone answered, fetch its delegation again from
  /// the parent and restart the resolution, once, within what is left of the deadline and the
  /// query budget (the run's hops go on). Nil when there is nothing to refresh: no such zone
  /// below the root, every one refreshed within the recheck interval, or no time left.
  nonisolated(nonsending) func restartWithFreshDelegations(_ question: Question) async -> NameOutcome? {
    guard !restarted, !staleOnly, !overDeadline, queriesSent < limits.maxQueries else { return nil }
    // Claimed under one lock each, so of concurrent resolutions failing on one zone one refreshes it.
    let zones = Set(unansweredZones.filter { !$0.isRoot })
      .filter { core.refreshedDelegations.insertIfAbsent(Question(name: $0, type: .ns)) }
    guard !zones.isEmpty else { return nil }
    restarted = true
    for zone in zones { core.cache.forgetDelegation(zone) }
    core.failureCache.remove(failuresCached)
    failuresCached.removeAll()
    unansweredZones.removeAll()
    core.counters.delegationRefreshes.increment()
    core.logger.debug(
      "\(question): no server of \(zones.map(\.description).sorted().joined(separator: ", ")) answered; delegation refreshed, restarting (R-43)"
    )
    return await resolve(question, depth: 0)
  }

  /// R-3 step 1, with R-8: glue and referral NS are never answers (`DNSCache.look`; `looked`
  /// when already looked up). A stale-only run takes the newest expired entry still kept when
  /// nothing live answers.
  func cachedOutcome(_ name: DNSName, _ type: RRType, looked: CacheLook? = nil) -> NameOutcome? {
    let cache = core.cache
    switch (looked ?? cache.look(name, type, checkingStale: false)).answer {
    case .rrset(let rrset): return .answer(rrset.records)
    case .alias(let rrset):
      if let rr = rrset.records.first, case .cname(let target) = rr.rdata { return .alias([rr], target: target) }
    case .negative(let neg): return neg.nxdomain ? .nxdomain([], soa: neg.soa) : .nodata([], soa: neg.soa)
    case nil: break
    }
    guard staleOnly, let stale = cache.newestStale(name, type) else { return nil }
    switch stale {
    case .rrset(let rrset):
      if rrset.type == .cname, type != .cname, let rr = rrset.records.first, case .cname(let target) = rr.rdata {
        return .alias([rr], target: target)
      }
      return .answer(rrset.records)
    case .negative(let neg): return neg.nxdomain ? .nxdomain([], soa: neg.soa) : .nodata([], soa: neg.soa)
    }
  }

  /// The iterative loop for one name.
  nonisolated(nonsending) func iterate(_ name: DNSName, _ type: RRType, depth: Int) async -> NameOutcome {
    // R-25 (1): parent-side types are asked of the parent's servers.
    let target = (type == .ds && !name.isRoot) ? (name.parent ?? .root) : name
    var zone = closestCut(below: target)
    var exposed = zone.labelCount
    var steps = 0
    var minimise = core.configuration.qnameMinimisation
    var fallbacks = 0
    // R-29 relaxed: a minimised step's NXDOMAIN, kept back until the un-minimised retry says.
    var deferredCut: (zone: DNSName, name: DNSName, type: RRType, kind: ReplyKind, aa: Bool)?
    while true {
      if overDeadline {
        core.counters.budgetExhausted.increment()
        return .failure("deadline of \(limits.deadline) s exceeded")
      }
      if referrals > limits.maxReferrals {
        core.counters.budgetExhausted.increment()
        return .failure("more than \(limits.maxReferrals) referrals")
      }
      if queriesSent >= limits.maxQueries {
        core.counters.budgetExhausted.increment()
        return .failure("more than \(limits.maxQueries) upstream queries")
      }

      let servers = await addresses(for: zone, depth: depth)
      if servers.isEmpty {
        // No usable address for this cut: fall back to the cut above it, once per level.
        guard let parent = zone.parent, fallbacks < 1 else {
          let hint = skippedByPolicy > 0 ? " (loopback/link-local servers skipped; see --allow-loopback)" : ""
          return .failure("no reachable server for zone \(zone)\(hint)")
        }
        fallbacks += 1
        zone = closestCut(below: parent)
        exposed = zone.labelCount
        continue
      }

      let sendName: DNSName
      if minimise && type != .ds && exposed < name.labelCount {
        let hidden = name.labelCount - exposed
        exposed += QnameMinimiser.labelsToExpose(hidden: hidden, stepsTaken: steps)
        sendName = name.suffix(labelCount: exposed)
        steps += 1
      } else {
        sendName = name
      }
      let sendType: RRType = sendName == name ? type : .a
      let minimised = sendName != name
      if minimised, let known = core.cache.lookupNegative(sendName, sendType) {
        // The minimised step's answer is cached: RFC 8020 for NXDOMAIN; a NODATA from this
        // zone (its SOA) says the name exists without a cut, so expose more labels without
        // asking again (R-25 (3)). Concurrent names below one empty non-terminal (a wildcard's
        // parent) otherwise re-sent the same step once per resolution.
        if known.nxdomain { return .nxdomain([], soa: known.soa) }
        if known.soa.name == zone { continue }
      }

      guard let (kind, aa) = await ask(servers, zone: zone, qname: sendName, qtype: sendType) else {
        if allHeld {
          unansweredZones.append(zone)
          core.counters.heldZoneFailures.increment()
          let next = servers.compactMap { core.selection.probeIn(server: $0.endpoint.ip) }.min() ?? 0
          return .failure(
            "every server for \(zone) is held as unresponsive (R-24); next probe in \((next * 10).rounded() / 10) s")
        }
        if let local = failedLocally {
          // Nothing reached a server: no un-minimised retry, no delegation refresh, and
          // the failure is not cached; the next query tries again.
          sawLocalFailure = true
          return .failure("could not send to any server for \(zone) from this machine (\(local))")
        }
        if minimised && !core.configuration.qnameMinimisationStrict {
          // R-29 relaxed: every server failed the minimised query; retry un-minimised.
          minimise = false
          exposed = zone.labelCount
          continue
        }
        unansweredZones.append(zone)
        return .failure("all servers for \(zone) failed")
      }
      // R-29 relaxed: a minimised step's NXDOMAIN may be a broken server's answer for an empty
      // non-terminal (seen in the wild, RFC 9156's relaxed mode); it is asked again un-minimised, and not
      // cached as a cut.
      var nxdomainRetry = false
      if minimised && !core.configuration.qnameMinimisationStrict, case .nxdomain(let chain, _) = kind {
        nxdomainRetry = chain.isEmpty
      }
      if nxdomainRetry {
        deferredCut = (zone, sendName, sendType, kind, aa)
      } else {
        store(kind, zone: zone, qname: sendName, qtype: sendType, authoritative: aa)
        // The same zone denies the full name too: its NXDOMAIN for the shorter name was no broken
        // server's, and is cached as the cut it is (RFC 8020) after all.
        if let cut = deferredCut, cut.zone == zone, case .nxdomain(let chain, _) = kind, chain.isEmpty {
          store(cut.kind, zone: zone, qname: cut.name, qtype: cut.type, authoritative: cut.aa)
        }
        deferredCut = nil
      }

      switch kind {
      case .referral(let child, _, _, _):
        referrals += 1
        zone = child
        exposed = max(exposed, child.labelCount)
        continue
      case .serverFailure(let why):
        return .failure(why)
      default:
        break
      }
      if minimised {
        switch kind {
        case .nxdomain(let chain, let soa) where chain.isEmpty:
          if nxdomainRetry {
            minimise = false
            exposed = zone.labelCount
            continue
          }
          // RFC 8020: nothing exists below a non-existent name (strict mode).
          return .nxdomain([], soa: soa)
        default:
          // Not a zone cut (NODATA, data, alias): expose more labels at the same zone (R-25 (3)).
          continue
        }
      }
      switch kind {
      // RFC 2181 §5.2: one TTL per RRset, as the cache will give it out later.
      case .answer(let chain, let records): return .answer(RRset.uniform(chain + records))
      case .alias(let chain, let target): return .alias(chain, target: target)
      case .nxdomain(let chain, let soa): return .nxdomain(chain, soa: soa)
      case .nodata(let chain, let soa): return .nodata(chain, soa: soa)
      case .yxdomain(let chain): return .yxdomain(chain)
      case .referral, .serverFailure: return .failure("unreachable")
      }
    }
  }

  /// The deepest zone at or above `name` whose NS set is cached; the root otherwise.
  func closestCut(below name: DNSName) -> DNSName {
    guard let up = core.cache.labelsAbove(name, toNearest: .ns) else { return .root }
    return up == 0 ? name : name.suffix(labelCount: name.labelCount - up)
  }
}

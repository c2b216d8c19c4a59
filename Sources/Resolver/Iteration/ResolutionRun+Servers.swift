import NIOCore

/// A server address to ask for a zone, with the NS name it came from (for traces).
struct Candidate {
  var endpoint: ServerEndpoint
  var nsName: DNSName?
}

extension ResolutionRun {
  /// Usable server addresses for `zone`: cached addresses of its NS names, then separately resolved
  /// ones for out-of-bailiwick names, the root hints for the root.
  nonisolated(nonsending) func addresses(for zone: DNSName, depth: Int) async -> [Candidate] {
    let (cached, nsNames) = cachedServers(of: zone)
    if !cached.isEmpty { return cached }
    var result: [Candidate] = []
    if zone.isRoot {
      // prime once (`. NS` to the hints) so the root servers come from the root zone itself.
      if !priming && core.configuration.primeRoot {
        priming = true
        _ = await resolveName(.root, .ns, depth: depth)
        priming = false
        let primed = cachedServers(of: .root).candidates
        if !primed.isEmpty { return primed }
      }
      return core.configuration.rootHints.servers.flatMap { server in
        server.addresses.compactMap { usableEndpoint(ip: $0) }.map { Candidate(endpoint: $0, nsName: server.name) }
      }
    }
    guard depth < limits.maxDepth else { return [] }
    // a zone whose server addresses are already being looked up further up this chain is a
    // delegation loop (A's servers inside B and B's inside A).
    guard !activeZones.contains(zone) else { return [] }
    activeZones.insert(zone)
    defer { activeZones.remove(zone) }
    var tried = 0
    for ns in nsNames where tried < limits.maxNSNamesPerZone {
      // An NS name inside the zone itself can only be reached through glue, which is missing.
      if ns.isSubdomain(of: zone) { continue }
      var types: [RRType] = []
      if core.configuration.useIPv4 { types.append(.a) }
      if core.configuration.useIPv6 { types.append(.aaaa) }
      for type in types {
        let q = Question(name: ns.lowercased(), type: type)
        if active.contains(q) { continue }  // delegation loop
        tried += 1
        active.insert(q)
        _ = await resolve(q, depth: depth + 1)
        active.remove(q)
        appendCachedAddresses(of: ns, to: &result)
        if !result.isEmpty { return result }
      }
    }
    return result
  }

  /// The cached addresses of `zone`'s NS names (any rank: glue is fine for reaching servers),
  /// filtered by policy, in order, and the NS names (empty when the addresses were kept). Kept per
  /// zone (`ZoneServerMemo`) while the cache confirms that what they came from did not change.
  func cachedServers(of zone: DNSName) -> (candidates: [Candidate], nsNames: [DNSName]) {
    let memo = core.zoneServers
    if let kept = memo.candidates(for: zone, in: core.cache) {
      skippedByPolicy += kept.skipped
      return (kept.candidates, [])
    }
    var stamps = core.cache.newStamps()
    let skippedBefore = skippedByPolicy
    var nsNames: [DNSName] = []
    // an NS set or address with TTL 0 is used by this run only; candidates built from one
    // are not kept in the memo.
    var usedTransient = false
    if let ns = core.cache.rdatas(zone, .ns, stamping: &stamps) ?? transientRdatas(zone, .ns, used: &usedTransient) {
      nsNames.reserveCapacity(ns.count)
      for case .ns(let n) in ns { nsNames.append(n) }
    }
    // Sized once for one address of each family per name.
    var result: [Candidate] = []
    result.reserveCapacity(nsNames.count * 2)
    for name in nsNames {
      for type in [RRType.a, .aaaa] {
        guard
          let rdatas = core.cache.rdatas(name, type, stamping: &stamps)
            ?? transientRdatas(name, type, used: &usedTransient)
        else { continue }
        appendEndpoints(rdatas, of: name, to: &result)
      }
    }
    if !result.isEmpty && !usedTransient {
      memo.remember(.init(candidates: result, stamps: stamps, skipped: skippedByPolicy - skippedBefore), for: zone)
    }
    return (result, nsNames)
  }

  /// Appends the cached A/AAAA of `name` (any rank: glue is fine for reaching servers), filtered
  /// by policy, to `out`.
  func appendCachedAddresses(of name: DNSName, to out: inout [Candidate]) {
    var usedTransient = false
    for type in [RRType.a, .aaaa] {
      guard let rdatas = core.cache.rdatas(name, type)?.rdatas ?? transientRdatas(name, type, used: &usedTransient)
      else { continue }
      appendEndpoints(rdatas, of: name, to: &out)
    }
  }

  /// This run's TTL-0 records of `name`/`type`, setting `used` when there are some.
  func transientRdatas(_ name: DNSName, _ type: RRType, used: inout Bool) -> [RData]? {
    guard !transient.isEmpty, let rdatas = transient[CacheKey(name: name, type: type, rrclass: .in)] else {
      return nil
    }
    used = true
    return rdatas
  }

  /// Appends the endpoints of `name`'s A/AAAA `rdatas` that policy allows to `out`.
  func appendEndpoints(_ rdatas: [RData], of name: DNSName, to out: inout [Candidate]) {
    for rdata in rdatas {
      // The record's octets give the scope and the socket address directly: no text round trip.
      let endpoint: ServerEndpoint?
      switch rdata {
      case .a(let a):
        endpoint = usableEndpoint(scope: AddressScope.of(a), isIPv6: false) { port in
          core.endpoints.endpoint(octets: a.octets) { ServerEndpoint(v4: a, port: port) }
        }
      case .aaaa(let a):
        endpoint = usableEndpoint(scope: AddressScope.of(a), isIPv6: true) { port in
          core.endpoints.endpoint(octets: a.octets) { ServerEndpoint(v6: a, port: port) }
        }
      default: continue
      }
      // One candidate per address: ns1 and ns2 at one IP are one server (R-40: it gets a
      // query's sends once, not once per name).
      if let endpoint, !out.contains(where: { $0.endpoint.ip == endpoint.ip }) {
        out.append(Candidate(endpoint: endpoint, nsName: name))
      }
    }
  }

  /// An endpoint for `ip` if policy allows querying it.
  func usableEndpoint(ip: String) -> ServerEndpoint? {
    let endpoint = ServerEndpoint(ip: ip, port: core.configuration.do53Port)
    return usableEndpoint(scope: AddressScope.of(ip: ip), isIPv6: endpoint?.isIPv6 ?? false) { _ in endpoint }
  }

  /// The endpoint `make` builds for the Do53 port if policy allows querying an address of this
  /// scope and family; `make` runs only when it does.
  func usableEndpoint(scope: AddressScope, isIPv6: Bool, _ make: (Int) -> ServerEndpoint?) -> ServerEndpoint? {
    let config = core.configuration
    switch scope {
    case .global: break
    case .loopback, .unspecified, .linkLocal:
      if !config.allowLoopback {
        skippedByPolicy += 1
        return nil
      }
    case .multicast:
      skippedByPolicy += 1
      return nil
    }
    if isIPv6 ? !config.useIPv6 : !config.useIPv4 { return nil }
    // No route to the family: skip global addresses at once instead of waiting for timeouts.
    if scope == .global, isIPv6 ? !config.ipv6Routable : !config.ipv4Routable { return nil }
    return make(config.do53Port)
  }

  /// Asks the zone's servers in srtt order until one gives a usable reply.
  /// Returns nil when every server failed.
  nonisolated(nonsending) func ask(_ servers: [Candidate], zone: DNSName, qname: DNSName, qtype: RRType) async -> (
    ReplyKind, Bool
  )? {
    let selection = core.selection
    let exchanger = core.exchanger
    // R-24 (RFC 9520 §3.2): servers held as unresponsive to this kind of query are left out but
    // for a probe that has come due: sent beside the resolution while the zone has live servers,
    // by the resolution itself when it has none; with all of them out and no probe due the zone
    // fails at once instead of waiting out their timeouts.
    let kind = ServerHealth.Kind(qtype)
    let (free, due, heldBack) = selection.admitted(servers, key: { $0.endpoint.ip }, runStarted: started, kind: kind)
    allHeld = free.isEmpty && due.isEmpty && heldBack > 0
    failedLocally = nil
    if allHeld { return nil }
    var probing: [(server: Candidate, replied: Task<Bool, Never>)] = []
    if !free.isEmpty {
      // A server whose hold ended since it was admitted is left to the next resolution.
      for server in due where selection.claimProbe(server: server.endpoint.ip, kind: kind) == .taken {
        probing.append((server, probeInBackground(server, zone: zone, qname: qname, qtype: qtype, held: true)))
      }
    }
    var (ordered, someSlower) = selection.rank(
      free, key: { $0.endpoint.ip }, prefer: { exchanger.prefersForPrivacy($0.endpoint.ip) },
      margin: core.configuration.privacyMarginMs)
    if free.isEmpty { ordered += due }
    // a slower server left unasked long enough is re-tested, beside the resolution; not
    // in cleartext while the server this resolution asks first speaks encryption. (Only a zone
    // with a server more than 100 ms slower than its best has one to age or re-test.)
    if someSlower {
      let encrypted = exchanger.prefersForPrivacy(ordered[0].endpoint.ip)
      let allowed = free.map { !encrypted || exchanger.prefersForPrivacy($0.endpoint.ip) }
      if let server = selection.takeRetest(free, key: { $0.endpoint.ip }, allowed: allowed) {
        _ = probeInBackground(server, zone: zone, qname: qname, qtype: qtype, held: false)
      }
    }
    var sentHere = false
    defer { if !sentHere && free.isEmpty { allHeld = true } }  // every probe taken by other resolutions
    var turn = Turn(zone: zone, qname: qname, qtype: qtype, kind: kind, someSlower: someSlower)
    defer { failedLocally = turn.sent > 0 && turn.failedLocally == turn.sent ? turn.localError : nil }
    if let reply = await ask(ordered, free: free.count, &turn, sentHere: &sentHere) { return reply }
    // The live servers all failed: a held server whose probe beside this resolution got an
    // answer is asked now, as it would have been after them.
    for probe in probing where !overDeadline && queriesSent < limits.maxQueries {
      guard await probe.replied.value else { continue }
      if let reply = await ask([probe.server], free: 1, &turn, sentHere: &sentHere) { return reply }
    }
    return nil
  }

  /// What one zone step asks.
  struct Turn {
    var zone: DNSName
    var qname: DNSName
    var qtype: RRType
    var kind: ServerHealth.Kind
    /// Whether a free server is more than 100 ms slower than the best (`ServerSelection.rank`).
    var someSlower = false
    /// Exchanges sent, and those of them that failed for want of something of this machine's
    /// (a `.io` leg last: no socket, no local port), with the latest such error.
    var sent = 0
    var failedLocally = 0
    var localError = ""
  }

  /// Asks `ordered` in turn, in passes while servers time out; those from index `free` on
  /// are held servers probed only if `claimProbe` still gives their probe. Sets `sentHere` when
  /// anything was sent.
  private nonisolated(nonsending) func ask(
    _ ordered: [Candidate], free: Int, _ turn: inout Turn, sentHere: inout Bool
  ) async -> (ReplyKind, Bool)? {
    let selection = core.selection
    let (zone, qname, qtype, kind) = (turn.zone, turn.qname, turn.qtype, turn.kind)
    let healthKind = kind
    let passes = max(1, core.configuration.queryRetries)
    for pass in 0..<passes {
      var sawTimeout = false
      for i in ordered.indices {
        let server = ordered[i]
        if queriesSent >= limits.maxQueries || overDeadline { return nil }
        // With no live server left, a held server's probe is taken only now, when it is sent (a
        // resolution that started before another's probe may still find it taken).
        if i >= free {
          switch selection.claimProbe(server: server.endpoint.ip, kind: kind) {
          case .taken: selection.noteProbe()
          case .notDue: continue
          case .notHeld: break  // a reply ended its hold: asked as any server
          }
        }
        sentHere = true
        var query = makeQuery(qname: qname, qtype: qtype)
        // T-46: a server that just refused EDNS is asked without it for a while.
        let knownPlain = core.ednsFallback.isPlain(server.endpoint.ip)
        if knownPlain { query.edns = nil }
        var sentAt = core.time.now()
        var result = await send(query, to: server, zone: zone)
        // only FORMERR/NOTIMP without OPT justify a retry without EDNS. (A plain query that
        // joined an identical EDNS one in flight got that one's reply: it is sent itself then.)
        if !knownPlain || result.joined, let r = result.response, r.edns == nil,
          r.rcode == .formErr || r.rcode == .notImp, queriesSent < limits.maxQueries
        {
          if !result.joined {
            // That reply shows the server alive (it ends a silent streak); no measure of an answer.
            selection.penalise(server: server.endpoint.ip, replied: healthKind)
            core.counters.ednsFallbacks.increment()
          }
          query.edns = nil
          query.header.id = Do53Exchanger.freshID()  // a new query, a new ID
          sentAt = core.time.now()
          result = await send(query, to: server, zone: zone)
          // RFC 6891 §6.2.2, T-46: it answers without EDNS; remembered briefly.
          if let plain = result.response, plain.rcode == .noError || plain.rcode == .nxDomain {
            core.ednsFallback.remember(server.endpoint.ip)
          }
        }
        turn.sent += 1
        guard let response = result.response else {
          if let why = result.failedLocally {
            turn.failedLocally += 1
            turn.localError = why
          }
          if core.noteNoReply(result, server: server.endpoint.ip, sentAt: sentAt, zone: zone, kind: kind) {
            sawTimeout = true
          }
          continue
        }
        let kind = ReplyClassifier.classify(
          response, zone: zone, qname: qname, qtype: qtype, relaxedGlue: core.configuration.relaxedGlue)
        core.counters.outOfBailiwick.increment(by: ReplyClassifier.outOfBailiwickCount(response, zone: zone))
        if case .serverFailure(let why) = kind, why.hasSuffix("-loop") { core.counters.aliasLoops.increment() }
        if var last = hops.popLast() {
          last.outcome = kind.outcome
          hops.append(last)
        }
        if !result.joined, let leg = result.legs.last {
          // A reply that is no answer (REFUSED, SERVFAIL, lame) is no measure of a useful server.
          if case .serverFailure = kind {
            // Alive (a probe's REFUSED ends a hold too), but no answer.
            if selection.penalise(server: server.endpoint.ip, replied: healthKind) {
              core.logger.notice("server \(server.endpoint.ip) (\(zone)) answers again; no longer held")
            }
          } else {
            core.noteLeg(leg, server: server.endpoint.ip, zone: zone, kind: healthKind)
          }
        }
        if case .serverFailure = kind { continue }
        if case .answer(_, let records) = kind, qtype == .ns { storeAddresses(of: records, from: response, zone: zone) }
        // The zone's servers ordered after this one were left unasked: the slower ones age,
        // but while this one speaks encryption, only those that do too (a re-test shows the
        // query's name to the server, in cleartext unless it is encrypted).
        if turn.someSlower, pass == 0, i + 1 < free {
          let exchanger = core.exchanger
          let encrypted = exchanger.prefersForPrivacy(server.endpoint.ip)
          selection.leftUnasked(
            ordered[(i + 1)..<free].map { ($0.endpoint.ip, !encrypted || exchanger.prefersForPrivacy($0.endpoint.ip)) },
            zone: ordered[..<free].map(\.endpoint.ip))
        }
        return (kind, response.header.aa)
      }
      if !sawTimeout || pass == passes - 1 { break }
    }
    return nil
  }

  /// Caches in-bailiwick addresses from the additional section for the NS names of an NS answer
  /// (priming, R-2), at the rank of additional data.
  func storeAddresses(of nsRecords: [ResourceRecord], from response: Message, zone: DNSName) {
    let names = nsRecords.compactMap { rr -> DNSName? in if case .ns(let n) = rr.rdata { n } else { nil } }
    let addresses = response.additional.filter {
      ($0.type == .a || $0.type == .aaaa) && names.contains($0.name) && $0.name.isSubdomain(of: zone)
    }
    for set in RRset.group(addresses) { core.cache.insert(set, rank: .additional) }
  }

  /// One exchange with one server; records its hops and RTT.
  nonisolated(nonsending) func send(_ query: Message, to server: Candidate, zone: DNSName) async -> ExchangeResult {
    queriesSent += 1
    let selection = core.selection
    let remaining = max(0.05, limits.deadline - (core.time.now() - started))
    // The server's whole timeout; the budget cuts it (and waits for a connection, fallbacks) to
    // what is left of the resolution's deadline, and a leg so cut is not held against the server.
    let timeoutMs = selection.timeoutMs(server: server.endpoint.ip)
    let context = ExchangeContext(nsName: server.nsName, zone: zone, budget: remaining)
    let timeout = TimeAmount.milliseconds(Int64(timeoutMs))
    let result: ExchangeResult
    if let policy = core.policyExchanger {
      result = await policy.exchange(query, server: server.endpoint, context: context, timeout: timeout)
    } else if let plain = core.plainExchanger {
      result = await plain.exchange(query, server: server.endpoint, context: context, timeout: timeout)
    } else {
      result = await core.exchanger.exchange(query, server: server.endpoint, context: context, timeout: timeout)
    }
    guard let q = query.questions.first else { return result }
    for (i, leg) in result.legs.enumerated() {
      hops.append(leg, server: server, zone: zone, question: q)
      // A result shared with the resolution that sent the query was recorded there; the leg that
      // brought the response is recorded by `ask`, once it knows whether that was an answer.
      if result.joined || (i == result.legs.count - 1 && result.hasResponse) { continue }
      if case .unreachable = leg.error, leg.transport.isCleartext {
        core.selection.penalise(server: server.endpoint.ip)  // nothing listens on its port 53
      } else {
        core.noteLeg(leg, server: server.endpoint.ip, zone: zone, kind: ServerHealth.Kind(q.type))
      }
    }
    return result
  }

  /// An iterative query: random ID, RD=0, one question, EDNS with our buffer size.
  func makeQuery(qname: DNSName, qtype: RRType) -> Message {
    var m = Message()
    var random = PooledRandom()
    m.header.id = UInt16.random(in: 0...UInt16.max, using: &random)
    m.header.rd = false
    m.questions = [Question(name: qname, type: qtype)]
    m.edns = EDNS(udpPayloadSize: core.configuration.ednsBufferSize)
    return m
  }

  /// Caches what a classified reply taught us, at the right rank.
  func store(_ kind: ReplyKind, zone: DNSName, qname: DNSName, qtype: RRType, authoritative: Bool) {
    let cache = core.cache
    let rank: TrustRank = authoritative ? .authAnswer : .nonAuthAnswer
    func put(_ records: [ResourceRecord], _ rank: TrustRank) {
      for set in RRset.group(records) where !set.type.isMeta {
        // the cache keeps no TTL-0 set; this run keeps it for its own further steps.
        if set.ttl == 0, !set.rdatas.isEmpty {
          transient[CacheKey(name: set.name, type: set.type, rrclass: set.rrclass)] = set.rdatas
        }
        cache.insert(set, rank: rank)
      }
    }
    switch kind {
    case .answer(let chain, let records):
      put(chain + records, rank)
    case .alias(let chain, _), .yxdomain(let chain):
      put(chain, rank)
    case .nxdomain(let chain, let soa):
      put(chain, rank)
      // the entry is an NXDOMAIN cut for the subtree (RFC 8020), so only from an
      // authoritative reply.
      if let soa, authoritative { cache.insertNegative(name: Self.lastName(chain, qname), type: nil, soa: soa) }
    case .nodata(let chain, let soa):
      put(chain, rank)
      if let soa { cache.insertNegative(name: Self.lastName(chain, qname), type: qtype, soa: soa) }
    case .referral(_, _, let nsRecords, let glue):
      put(nsRecords, .referralNS)
      put(glue, .glue)
    case .serverFailure:
      break
    }
  }

  /// The name a chain ends at (the owner the final rcode belongs to, R-14).
  static func lastName(_ chain: [ResourceRecord], _ qname: DNSName) -> DNSName {
    for rr in chain.reversed() {
      if case .cname(let t) = rr.rdata { return t }
    }
    return qname
  }
}

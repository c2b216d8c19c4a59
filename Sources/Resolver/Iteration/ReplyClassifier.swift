/// What a reply from the servers of one zone means for the question that was sent.
enum ReplyKind: Equatable {
  /// Data for the (last name of the) question; `chain` holds CNAME/DNAME links followed inside the reply.
  case answer(chain: [ResourceRecord], records: [ResourceRecord])
  /// The chain leads to `target`, whose data this server cannot give: continue resolution there.
  case alias(chain: [ResourceRecord], target: DNSName)
  /// The (last) name does not exist.
  case nxdomain(chain: [ResourceRecord], soa: ResourceRecord?)
  /// The (last) name exists but has no data of the type.
  case nodata(chain: [ResourceRecord], soa: ResourceRecord?)
  /// A delegation to `child`, strictly below the queried zone.
  case referral(child: DNSName, nsNames: [DNSName], nsRecords: [ResourceRecord], glue: [ResourceRecord])
  /// A DNAME substitution would exceed 255 octets.
  case yxdomain(chain: [ResourceRecord])
  /// This server failed us: lame, upward referral, error rcode, or nonsense. Try another.
  case serverFailure(String)

  /// Word for traces.
  var outcome: String {
    switch self {
    case .answer(let chain, _): chain.isEmpty ? "answer" : "answer+cname"
    case .alias: "cname"
    case .nxdomain: "nxdomain"
    case .nodata: "nodata"
    case .referral: "referral"
    case .yxdomain: "yxdomain"
    case .serverFailure(let why): why
    }
  }
}

/// Pure classification of replies with bailiwick rules.
enum ReplyClassifier {
  static let maxLinksPerReply = 16

  /// Records of `reply` that `classify` ignores because their owner lies outside `zone`:
  /// answer and authority records, and additional records other than OPT.
  static func outOfBailiwickCount(_ reply: Message, zone: DNSName) -> Int {
    let outside = { (rr: ResourceRecord) in rr.type != .opt && !rr.name.isSubdomain(of: zone) }
    return reply.answers.filter(outside).count + reply.authority.filter(outside).count
      + reply.additional.filter(outside).count
  }

  /// Classifies `reply` from a server of `zone`, asked `qname`/`qtype`.
  static func classify(
    _ reply: Message, zone: DNSName, qname: DNSName, qtype: RRType, relaxedGlue: Bool = false
  ) -> ReplyKind {
    let rcode = reply.rcode
    guard rcode == .noError || rcode == .nxDomain else {
      return .serverFailure(rcode.description.lowercased())
    }
    // only records at or below the zone are considered at all.
    let answers = kept(reply.answers) { $0.name.isSubdomain(of: zone) && $0.rrclass == .in }
    let authority = kept(reply.authority) { $0.name.isSubdomain(of: zone) }

    var name = qname
    var chain: [ResourceRecord] = []
    // qname is checked apart, so a reply without CNAME/DNAME links allocates no set.
    var seen: Set<DNSName> = []
    for _ in 0..<maxLinksPerReply {
      let data = kept(answers) { $0.name == name && ($0.type == qtype || qtype == .any) }
      if !data.isEmpty { return .answer(chain: chain, records: data) }
      if let d = answers.first(where: { $0.type == .dname && name.isSubdomain(of: $0.name) && name != $0.name }),
        case .dname(let target) = d.rdata
      {
        // synthesize the CNAME ourselves, ignoring any the server sent.
        let keep = name.labels.prefix(name.labelCount - d.name.labelCount)
        guard let newName = try? DNSName(labels: Array(keep) + target.labels) else {
          return .yxdomain(chain: chain + [d])
        }
        let synth = ResourceRecord(name: name, type: .cname, ttl: d.ttl, rdata: .cname(newName))
        chain.append(d)
        chain.append(synth)
        if newName == qname || seen.contains(newName) { return .serverFailure("dname-loop") }
        seen.insert(newName)
        name = newName
        continue
      }
      if qtype != .cname, let c = answers.first(where: { $0.name == name && $0.type == .cname }),
        case .cname(let target) = c.rdata
      {
        chain.append(c)
        if target == qname || seen.contains(target) { return .serverFailure("cname-loop") }
        seen.insert(target)
        name = target
        continue
      }
      break
    }

    let soa = authority.first { $0.type == .soa && name.isSubdomain(of: $0.name) }
    if !chain.isEmpty {
      // The server speaks only for names inside its zone (RFC 6604 / R-11).
      guard name.isSubdomain(of: zone) else { return .alias(chain: chain, target: name) }
      if rcode == .nxDomain { return .nxdomain(chain: chain, soa: soa) }
      // Without an SOA the target may sit below a cut inside the zone: resolve it afresh.
      if soa != nil { return .nodata(chain: chain, soa: soa) }
      return .alias(chain: chain, target: name)
    }
    // a negative answer whose only SOA is an ancestor's comes from a server authoritative
    // for the parent but not for this zone (a stale secondary, say): lame, not "no such name".
    if soa == nil
      && reply.authority.contains(where: { $0.type == .soa && zone.isSubdomain(of: $0.name) && $0.name != zone })
    {
      return .serverFailure("lame")
    }
    if rcode == .nxDomain {
      // R-5 (RFC 4697 §2.1): neither authoritative nor carrying the zone's SOA: not an answer.
      if !reply.header.aa && soa == nil { return .serverFailure("lame") }
      return .nxdomain(chain: [], soa: soa)
    }
    if !answers.isEmpty || !reply.answers.isEmpty {
      // Records for other names or types only (for example out-of-bailiwick data).
      if reply.header.aa || soa != nil { return .nodata(chain: [], soa: soa) }
      return .serverFailure("lame")
    }
    // Referral: NS for a name strictly below the zone that is the QNAME or an ancestor of it, no SOA.
    let delegations = reply.authority.filter { $0.type == .ns }
    if soa == nil, let owner = delegations.first?.name {
      guard owner.isSubdomain(of: zone), owner != zone, qname.isSubdomain(of: owner) else {
        return .serverFailure("lame")  // upward or sideways referral
      }
      let nsRecords = delegations.filter { $0.name == owner }
      let nsNames = nsRecords.compactMap { rr -> DNSName? in
        if case .ns(let n) = rr.rdata { return n }
        return nil
      }
      // glue only for the NS targets, only in bailiwick of the queried zone (relaxed: any
      // address record for an NS target).
      let glue = reply.additional.filter { rr in
        (rr.type == .a || rr.type == .aaaa) && (relaxedGlue || rr.name.isSubdomain(of: zone))
          && nsNames.contains(rr.name)
      }
      return .referral(child: owner, nsNames: nsNames, nsRecords: nsRecords, glue: glue)
    }
    if reply.header.aa || soa != nil { return .nodata(chain: [], soa: soa) }
    return .serverFailure("lame")
  }

  /// The records of `records` that pass `include`: `records` itself when all do (the usual case,
  /// which then copies nothing), else a filtered copy.
  static func kept(
    _ records: [ResourceRecord], where include: (ResourceRecord) -> Bool
  ) -> [ResourceRecord] {
    records.allSatisfy(include) ? records : records.filter(include)
  }
}

import Resolver

/// Answers DNS queries from in-memory zones like an authoritative server (RFC 1034 §4.3.2):
/// AA answers, referrals with in-zone glue, CNAME chains inside the zone, wildcards one level below
/// an existing name, NXDOMAIN/NODATA with the SOA, and REFUSED outside its zones.
public struct AuthorityEngine: Sendable {
  /// Zones, most specific origin first.
  let zones: [Zone]

  public init(zones: [Zone]) {
    self.zones = zones.sorted { $0.origin.labelCount > $1.origin.labelCount }
  }

  /// The response bytes for a query message's bytes; nil (send nothing) for bytes that are not a
  /// query. Over UDP the response is truncated (TC=1) to the client's EDNS size or 512.
  public func respond(to bytes: [UInt8], overTCP: Bool = true) -> [UInt8]? {
    guard let query = try? Message.parse(bytes) else {
      guard bytes.count >= 12, bytes[2] & 0x80 == 0 else { return nil }
      return [bytes[0], bytes[1], 0x80 | (bytes[2] & 0x79), 0x01, 0, 0, 0, 0, 0, 0, 0, 0]  // FORMERR
    }
    guard !query.header.qr else { return nil }
    let response = answer(query)
    let limit = overTCP ? 65_535 : max(512, min(Int(query.edns?.udpPayloadSize ?? 512), 1232))
    return response.serialize(maxSize: limit)
  }

  /// The response message for a parsed query.
  public func answer(_ query: Message) -> Message {
    var r = Message()
    r.header.id = query.header.id
    r.header.qr = true
    r.header.opcode = query.header.opcode
    r.header.rd = query.header.rd
    r.questions = query.questions
    if query.edns != nil { r.edns = EDNS(udpPayloadSize: 1232) }
    guard query.header.opcode == 0 else {
      r.rcode = .notImp
      return r
    }
    guard query.questions.count == 1, let q = query.questions.first else {
      r.rcode = .formErr
      return r
    }
    let qname = q.name.lowercased()
    guard q.qclass == .in || q.qclass == .any, let zone = zones.first(where: { qname.isSubdomain(of: $0.origin) })
    else {
      r.rcode = .refused
      return r
    }
    // A delegation above or at the name (but below the apex) makes this a referral.
    if let cut = delegation(above: qname, in: zone), !(cut == qname && q.type == .ds) {
      let ns = zone.nodes[cut]?[.ns] ?? []
      r.authority = ns
      r.additional = glue(for: ns, in: zone)
      return r
    }
    r.header.aa = true
    var name = qname
    var seen: Set<DNSName> = []
    while seen.insert(name).inserted {
      let node = zone.nodes[name] ?? wildcard(for: name, in: zone).map { Self.rename($0, to: name) }
      guard let node else {
        if r.answers.isEmpty {
          r.rcode = zone.interior.contains(name) ? .noError : .nxDomain
        }
        r.authority = [zone.soa]
        return r
      }
      if let records = node[q.type], q.type != .cname || !records.isEmpty {
        r.answers += records
        return r
      }
      if q.type == .any {
        r.answers += node.values.flatMap { $0 }
        return r
      }
      if let cname = node[.cname]?.first, case .cname(let target) = cname.rdata {
        r.answers.append(cname)
        name = target.lowercased()
        guard name.isSubdomain(of: zone.origin), delegation(above: name, in: zone) == nil else { return r }
        continue
      }
      r.authority = [zone.soa]  // NODATA
      return r
    }
    return r  // CNAME loop inside the zone: what we have
  }

  func delegation(above name: DNSName, in zone: Zone) -> DNSName? {
    var best: DNSName?
    var n: DNSName? = name
    while let current = n, current.labelCount > zone.origin.labelCount {
      if zone.cuts.contains(current) { best = current }
      n = current.parent
    }
    return best
  }

  func glue(for ns: [ResourceRecord], in zone: Zone) -> [ResourceRecord] {
    ns.flatMap { rr -> [ResourceRecord] in
      guard case .ns(let host) = rr.rdata else { return [] }
      let h = host.lowercased()
      guard h.isSubdomain(of: zone.origin), let node = zone.nodes[h] else { return [] }
      return (node[.a] ?? []) + (node[.aaaa] ?? [])
    }
  }

  /// `*.parent` when `name` does not exist and its parent does.
  func wildcard(for name: DNSName, in zone: Zone) -> [RRType: [ResourceRecord]]? {
    guard let parent = name.parent, zone.nodes[parent] != nil || zone.interior.contains(parent),
      let star = try? parent.prepending(Array("*".utf8))
    else { return nil }
    return zone.nodes[star]
  }

  static func rename(_ node: [RRType: [ResourceRecord]], to name: DNSName) -> [RRType: [ResourceRecord]] {
    node.mapValues {
      $0.map { rr in ResourceRecord(name: name, type: rr.type, rrclass: rr.rrclass, ttl: rr.ttl, rdata: rr.rdata) }
    }
  }
}

import Resolver

/// One authoritative zone held in memory: its records by owner name (lowercased) and type, its SOA,
/// and the names where it delegates (NS below the apex).
public struct Zone: Sendable {
  public let origin: DNSName
  public let soa: ResourceRecord
  let nodes: [DNSName: [RRType: [ResourceRecord]]]
  /// Names that exist only because something exists below them (empty non-terminals).
  let interior: Set<DNSName>
  let cuts: Set<DNSName>

  /// Builds a zone from zone-file text; fails on a syntax error, on records outside `origin`, or
  /// without exactly one SOA at the apex.
  public init(origin: DNSName, text: String) throws(ZoneError) {
    let records: [ResourceRecord]
    do {
      records = try ZoneFile.parse(text, origin: origin)
    } catch {
      throw .syntax(zone: origin.description, "\(error)")
    }
    try self.init(origin: origin, records: records)
  }

  /// Builds a zone from parsed records (same checks as `init(origin:text:)`).
  public init(origin: DNSName, records: [ResourceRecord]) throws(ZoneError) {
    let apex = origin.lowercased()
    var nodes: [DNSName: [RRType: [ResourceRecord]]] = [:]
    var interior: Set<DNSName> = []
    for rr in records {
      let owner = rr.name.lowercased()
      guard owner.isSubdomain(of: apex) else { throw .outOfZone(zone: origin.description, rr.name.description) }
      nodes[owner, default: [:]][rr.type, default: []].append(rr)
      var up = owner.parent
      while let n = up, n.labelCount > apex.labelCount {
        interior.insert(n)
        up = n.parent
      }
    }
    let soas = nodes[apex]?[.soa] ?? []
    guard soas.count == 1, let soa = soas.first else { throw .noSOA(zone: origin.description) }
    self.origin = apex
    self.soa = soa
    self.nodes = nodes
    self.interior = interior
    self.cuts = Set(nodes.compactMap { name, types in name != apex && types[.ns] != nil ? name : nil })
  }
}

/// Why a zone could not be loaded.
public enum ZoneError: Error, Sendable, Equatable, CustomStringConvertible {
  case syntax(zone: String, String)
  case outOfZone(zone: String, String)
  case noSOA(zone: String)

  public var description: String {
    switch self {
    case .syntax(let z, let why): "zone \(z): \(why)"
    case .outOfZone(let z, let name): "zone \(z): record for \(name) is outside the zone"
    case .noSOA(let z): "zone \(z): needs exactly one SOA at the apex"
    }
  }
}

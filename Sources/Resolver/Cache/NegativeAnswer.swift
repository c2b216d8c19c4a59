/// A negative answer from the cache: NXDOMAIN for the name or NODATA for (name, type) (R-19..R-22).
public struct NegativeAnswer: Sendable, Hashable {
  public var nxdomain: Bool
  /// The SOA that justified caching, TTL already decremented.
  public var soa: ResourceRecord
  /// The name the entry was cached for; an ancestor of the queried name for an RFC 8020 NXDOMAIN cut.
  public var owner: DNSName

  public init(nxdomain: Bool, soa: ResourceRecord, owner: DNSName) {
    self.nxdomain = nxdomain
    self.soa = soa
    self.owner = owner
  }
}

extension NegativeAnswer {
  /// The negative TTL for `soa`: min(SOA TTL, SOA MINIMUM, cap); nil when `soa` is not an SOA.
  static func ttl(for soa: ResourceRecord, cap: UInt32) -> UInt32? {
    guard case .soa(_, _, _, _, _, _, let minimum) = soa.rdata else { return nil }
    return min(soa.ttl, minimum, cap)
  }
}

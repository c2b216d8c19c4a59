/// What the cache is indexed by: the lowercased owner, the type and the class.
/// A nil type stands for "any type" and is used for NXDOMAIN entries.
struct CacheKey: Hashable, Sendable {
  var name: DNSName
  var type: RRType?
  var rrclass: RRClass

  init(name: DNSName, type: RRType?, rrclass: RRClass) {
    self.name = name.lowercased()
    self.type = type
    self.rrclass = rrclass
  }
}

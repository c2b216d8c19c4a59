/// An IPv4 address as four octets.
public struct IPv4Address: Sendable, Hashable, CustomStringConvertible {
  public var octets: [UInt8]  // always 4
  public init?(octets: [UInt8]) {
    guard octets.count == 4 else { return nil }
    self.octets = octets
  }
  /// Parses dotted-quad text.
  public init?(_ text: String) {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var o: [UInt8] = []
    for p in parts {
      guard !p.isEmpty, p.count <= 3, let v = UInt8(p) else { return nil }
      o.append(v)
    }
    self.octets = o
  }
  public var description: String {
    // Built as bytes: this runs for every server address the iteration considers.
    var out: [UInt8] = []
    out.reserveCapacity(15)
    for (i, v) in octets.enumerated() {
      if i > 0 { out.append(UInt8(ascii: ".")) }
      if v >= 100 { out.append(48 + v / 100) }
      if v >= 10 { out.append(48 + (v / 10) % 10) }
      out.append(48 + v % 10)
    }
    return String(decoding: out, as: UTF8.self)
  }
}

/// An IPv6 address as sixteen octets; printed in RFC 5952 form.
public struct IPv6Address: Sendable, Hashable, CustomStringConvertible {
  public var octets: [UInt8]  // always 16
  public init?(octets: [UInt8]) {
    guard octets.count == 16 else { return nil }
    self.octets = octets
  }
  /// Parses RFC 4291 text (with `::` and an optional embedded IPv4 tail).
  public init?(_ text: String) {
    guard let o = IPv6Address.parse(text) else { return nil }
    self.octets = o
  }
  public var description: String { IPv6Address.format(octets) }
}

/// One SVCB/HTTPS parameter (RFC 9460), kept as key and raw value.
public struct SVCParam: Sendable, Hashable {
  public var key: UInt16
  public var value: [UInt8]
  public init(key: UInt16, value: [UInt8]) {
    self.key = key
    self.value = value
  }
}

/// Typed record data. Types without a case here are kept as `.unknown` (RFC 3597).
public enum RData: Sendable, Hashable {
  case a(IPv4Address)
  case aaaa(IPv6Address)
  case ns(DNSName)
  case cname(DNSName)
  case dname(DNSName)
  case ptr(DNSName)
  case soa(
    mname: DNSName, rname: DNSName, serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32)
  case mx(preference: UInt16, exchange: DNSName)
  case txt([[UInt8]])
  case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
  case caa(flags: UInt8, tag: String, value: [UInt8])
  case ds(keyTag: UInt16, algorithm: UInt8, digestType: UInt8, digest: [UInt8])
  case dnskey(flags: UInt16, protocol: UInt8, algorithm: UInt8, publicKey: [UInt8])
  case rrsig(
    typeCovered: RRType, algorithm: UInt8, labels: UInt8, originalTTL: UInt32, expiration: UInt32,
    inception: UInt32, keyTag: UInt16, signerName: DNSName, signature: [UInt8])
  case nsec(nextName: DNSName, types: [RRType])
  case nsec3(
    hashAlgorithm: UInt8, flags: UInt8, iterations: UInt16, salt: [UInt8], nextHashedOwner: [UInt8], types: [RRType])
  /// SVCB (type 64) and HTTPS (type 65) share this shape; the record's type tells them apart.
  case svcb(priority: UInt16, target: DNSName, params: [SVCParam])
  /// Any other type, as raw octets (RFC 3597).
  case unknown([UInt8])
}

/// A resource record type (RFC 1035 §3.2.2 and later registrations).
public struct RRType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }
  public init(_ rawValue: UInt16) { self.rawValue = rawValue }

  public static let a = RRType(1)
  public static let ns = RRType(2)
  public static let cname = RRType(5)
  public static let soa = RRType(6)
  public static let ptr = RRType(12)
  public static let hinfo = RRType(13)
  public static let mx = RRType(15)
  public static let txt = RRType(16)
  public static let aaaa = RRType(28)
  public static let srv = RRType(33)
  public static let naptr = RRType(35)
  public static let dname = RRType(39)
  public static let opt = RRType(41)
  public static let ds = RRType(43)
  public static let rrsig = RRType(46)
  public static let nsec = RRType(47)
  public static let dnskey = RRType(48)
  public static let nsec3 = RRType(50)
  public static let nsec3param = RRType(51)
  public static let svcb = RRType(64)
  public static let https = RRType(65)
  public static let tkey = RRType(249)
  public static let tsig = RRType(250)
  public static let ixfr = RRType(251)
  public static let axfr = RRType(252)
  public static let maila = RRType(253)
  public static let mailb = RRType(254)
  public static let any = RRType(255)
  public static let caa = RRType(257)

  static let mnemonics: [UInt16: String] = [
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
    50: "NSEC3", 51: "NSEC3PARAM", 64: "SVCB", 65: "HTTPS", 249: "TKEY", 250: "TSIG", 251: "IXFR",
    252: "AXFR", 253: "MAILA", 254: "MAILB", 255: "ANY", 257: "CAA",
  ]
  static let byMnemonic: [String: UInt16] = Dictionary(
    uniqueKeysWithValues: mnemonics.map { ($0.value, $0.key) })

  /// Parses `AAAA`, `aaaa` or the RFC 3597 form `TYPE1234`.
  public init?(mnemonic: String) {
    let upper = mnemonic.uppercased()
    if let v = RRType.byMnemonic[upper] {
      self.init(v)
    } else if upper.hasPrefix("TYPE"), let v = UInt16(upper.dropFirst(4)) {
      self.init(v)
    } else {
      return nil
    }
  }

  /// `A`, `AAAA`, ... or `TYPE1234` for unknown types.
  public var description: String { RRType.mnemonics[rawValue] ?? "TYPE\(rawValue)" }

  /// Meta and query-only types (RFC 6895 §3.1), never stored in a cache.
  public var isMeta: Bool { rawValue == 41 || (rawValue >= 128 && rawValue <= 255) }
}

/// A resource record class. Only IN is used for resolution.
public struct RRClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }
  public init(_ rawValue: UInt16) { self.rawValue = rawValue }
  public static let `in` = RRClass(1)
  public static let ch = RRClass(3)
  public static let hs = RRClass(4)
  public static let none = RRClass(254)
  public static let any = RRClass(255)

  /// Parses `IN`, `CH`, `HS`, `ANY` or `CLASS123`.
  public init?(mnemonic: String) {
    switch mnemonic.uppercased() {
    case "IN": self = .in
    case "CH": self = .ch
    case "HS": self = .hs
    case "ANY": self = .any
    case let s where s.hasPrefix("CLASS"):
      guard let v = UInt16(s.dropFirst(5)) else { return nil }
      self.init(v)
    default: return nil
    }
  }

  public var description: String {
    switch rawValue {
    case 1: "IN"
    case 3: "CH"
    case 4: "HS"
    case 254: "NONE"
    case 255: "ANY"
    default: "CLASS\(rawValue)"
    }
  }
}

/// A response code, including EDNS extended codes (12 bits).
public struct RCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }
  public init(_ rawValue: UInt16) { self.rawValue = rawValue }
  public static let noError = RCode(0)
  public static let formErr = RCode(1)
  public static let servFail = RCode(2)
  public static let nxDomain = RCode(3)
  public static let notImp = RCode(4)
  public static let refused = RCode(5)
  public static let yxDomain = RCode(6)
  public static let badVers = RCode(16)
  public static let badCookie = RCode(23)

  /// `NOERROR`, `NXDOMAIN`, ... as `dig` prints them.
  public var description: String {
    switch rawValue {
    case 0: "NOERROR"
    case 1: "FORMERR"
    case 2: "SERVFAIL"
    case 3: "NXDOMAIN"
    case 4: "NOTIMP"
    case 5: "REFUSED"
    case 6: "YXDOMAIN"
    case 7: "YXRRSET"
    case 8: "NXRRSET"
    case 9: "NOTAUTH"
    case 10: "NOTZONE"
    case 16: "BADVERS"
    case 23: "BADCOOKIE"
    default: "RCODE\(rawValue)"
    }
  }
}

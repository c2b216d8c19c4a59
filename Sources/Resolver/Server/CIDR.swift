import NIOCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Why a CIDR text could not be read.
public struct CIDRParseError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The text that was rejected.
  public var text: String
  /// What is wrong with it.
  public var reason: String
  public var description: String { "invalid CIDR '\(text)': \(reason)" }
}

/// An IPv4 or IPv6 network such as `127.0.0.0/8` or `::1/128`; a bare address is a host route.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
  /// Network address octets (4 or 16), host bits cleared.
  public let octets: [UInt8]
  /// Number of leading bits that must match.
  public let prefixLength: Int

  /// True for an IPv4 network.
  public var isIPv4: Bool { octets.count == 4 }

  /// Parses `a.b.c.d/n`, `x:y::z/n` or a bare address (prefix = full length).
  public init(_ text: String) throws(CIDRParseError) {
    let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
    let addressText = String(parts[0])
    guard let octets = CIDR.parseAddress(addressText) else {
      throw CIDRParseError(text: text, reason: "'\(addressText)' is not an IPv4 or IPv6 address")
    }
    let maxBits = octets.count * 8
    var prefix = maxBits
    if parts.count == 2 {
      guard let p = Int(parts[1]), (0...maxBits).contains(p), parts[1].allSatisfy(\.isASCII) else {
        throw CIDRParseError(text: text, reason: "prefix length must be 0...\(maxBits)")
      }
      prefix = p
    }
    self.prefixLength = prefix
    self.octets = CIDR.mask(octets, prefix)
  }

  /// The loopback networks `127.0.0.0/8` and `::1/128`.
  public static let loopback: [CIDR] = [
    CIDR(uncheckedOctets: [127, 0, 0, 0], prefixLength: 8),
    CIDR(uncheckedOctets: Array(repeating: 0, count: 15) + [1], prefixLength: 128),
  ]

  private init(uncheckedOctets: [UInt8], prefixLength: Int) {
    self.octets = uncheckedOctets
    self.prefixLength = prefixLength
  }

  /// True if `address` lies in this network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) match
  /// IPv4 networks; Unix-domain addresses match nothing.
  /// Compares in place, without allocating (it runs for every client datagram).
  public func contains(_ address: SocketAddress) -> Bool {
    switch address {
    case .v4(let v4):
      return withUnsafeBytes(of: v4.address.sin_addr) { matches($0) }
    case .v6(let v6):
      return containsV6(v6.address)
    default:  // Unix-domain sockets
      return false
    }
  }

  /// `contains` for an address kept raw (the UDP socket loop's clients; no `SocketAddress` box).
  func contains(_ address: RawClientAddress) -> Bool {
    switch address {
    case .v4(let a): return withUnsafeBytes(of: a.sin_addr) { matches($0) }
    case .v6(let a): return containsV6(a)
    case .other(let a): return contains(a)
    }
  }

  private func containsV6(_ address: sockaddr_in6) -> Bool {
    withUnsafeBytes(of: address.sin6_addr) { raw in
      if isIPv4, raw.prefix(12).elementsEqual(CIDR.mappedPrefix) {
        return matches(UnsafeRawBufferPointer(rebasing: raw[12...]))
      }
      return matches(raw)
    }
  }

  /// True if `candidate` (4 or 16 octets) has this network's first `prefixLength` bits.
  private func matches(_ candidate: UnsafeRawBufferPointer) -> Bool {
    guard candidate.count == octets.count else { return false }
    var bits = prefixLength
    var i = 0
    while bits > 0 {
      let mask: UInt8 = bits >= 8 ? 0xFF : ~(UInt8(0xFF) >> bits)
      guard candidate[i] & mask == octets[i] else { return false }
      bits -= 8
      i += 1
    }
    return true
  }

  public var description: String {
    var buffer = [CChar](repeating: 0, count: 64)
    let family = isIPv4 ? AF_INET : AF_INET6
    let text: String? = octets.withUnsafeBytes { raw in
      guard let base = raw.baseAddress, inet_ntop(family, base, &buffer, socklen_t(buffer.count)) != nil else {
        return nil
      }
      return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    return "\(text ?? "?")/\(prefixLength)"
  }

  private static let mappedPrefix: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]

  private static func mask(_ octets: [UInt8], _ prefix: Int) -> [UInt8] {
    var out = octets
    for i in 0..<out.count {
      let bitsHere = min(max(prefix - i * 8, 0), 8)
      out[i] &= bitsHere == 8 ? 0xFF : ~(UInt8(0xFF) >> bitsHere)
    }
    return out
  }

  /// Address text to 4 or 16 octets via `inet_pton`.
  static func parseAddress(_ text: String) -> [UInt8]? {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
    return nil
  }

  /// The address octets of an IP socket address, in network order.
  static func octets(of address: SocketAddress) -> [UInt8]? {
    switch address {
    case .v4(let v4):
      return withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
    case .v6(let v6):
      return withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
    default:  // Unix-domain sockets
      return nil
    }
  }
}

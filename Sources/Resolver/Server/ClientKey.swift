import NIOCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The budget a client address counts against for the per-client limits (the query rate and
/// the open connections): an IPv4 address, or an IPv6 prefix (`server.client-ipv6-prefix`, /64 by
/// default). A /64 is one subscriber's network, in which a host may use any address (SLAAC, RFC
/// 8981's temporary addresses rotate within it), so one host cannot multiply its share by
/// changing addresses; dnsdist's per-client rules take /64 too. The cost: the IPv6 hosts of one
/// LAN (one /64) share a budget, so a resolver serving many of them raises the limits or counts
/// each address (128). An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`, a client of a
/// dual-stack `[::]` listener) counts as that IPv4 address. Made from the socket address's
/// bytes: no text.
enum ClientKey: Hashable, Sendable, CustomStringConvertible {
  /// The address in network byte order.
  case v4(UInt32)
  /// The address's first `prefix` bits (the rest zero), as two host-order words, `prefix`, and
  /// for a link-local address its interface (`sin6_scope_id`: fe80::/64 is every link's; 0 else).
  case v6(UInt64, UInt64, prefix: UInt8, scope: UInt32)
  /// A peer address that is neither (a Unix socket, none known): one budget for all of them.
  case unknown

  init(_ address: RawClientAddress?, ipv6Prefix: Int = 64) {
    switch address {
    case .v4(let a): self = .v4(a.sin_addr.s_addr)
    case .v6(let a): self = Self(in6: a.sin6_addr, scope: a.sin6_scope_id, prefix: ipv6Prefix)
    case .other(let a): self = Self(a, ipv6Prefix: ipv6Prefix)
    case nil: self = .unknown
    }
  }

  init(_ address: SocketAddress?, ipv6Prefix: Int = 64) {
    switch address {
    case .v4(let a): self = .v4(a.address.sin_addr.s_addr)
    case .v6(let a): self = Self(in6: a.address.sin6_addr, scope: a.address.sin6_scope_id, prefix: ipv6Prefix)
    default: self = .unknown
    }
  }

  private init(in6 address: in6_addr, scope: UInt32, prefix: Int) {
    let bits = UInt8(clamping: min(max(prefix, 0), 128))
    self = withUnsafeBytes(of: address) { bytes in
      let mapped = bytes.prefix(10).allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
      if mapped { return .v4(bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
      let high = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
      let low = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
      let linkLocal = high >> 54 == 0x3FA  // fe80::/10
      return .v6(
        Self.keep(high, bits: Int(bits)), Self.keep(low, bits: Int(bits) - 64), prefix: bits,
        scope: linkLocal ? scope : 0)
    }
  }

  /// `word`'s leading `bits` bits (host order), the rest zero.
  private static func keep(_ word: UInt64, bits: Int) -> UInt64 {
    if bits <= 0 { return 0 }
    if bits >= 64 { return word }
    return word & ~(UInt64.max >> bits)
  }

  /// The address or the prefix, as `inet_ntop` writes it.
  var description: String {
    switch self {
    case .v4(let raw):
      var a = sockaddr_in()
      a.sin_family = sa_family_t(AF_INET)
      a.sin_addr.s_addr = raw
      return SocketAddress(a, host: "").ipAddress ?? "?"
    case .v6(let high, let low, let prefix, let scope):
      var a = sockaddr_in6()
      a.sin6_family = sa_family_t(AF_INET6)
      withUnsafeMutableBytes(of: &a.sin6_addr) {
        $0.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
        $0.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
      }
      return (SocketAddress(a, host: "").ipAddress ?? "?") + "/\(prefix)" + (scope == 0 ? "" : "%\(scope)")
    case .unknown: return "?"
    }
  }
}

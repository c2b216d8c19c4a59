import NIOCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An authoritative server address as the resolver sees it: the IP (text and NIO form) and the port
/// used for Do53. The encrypted transports derive their own ports from configuration (853 by default).
public struct ServerEndpoint: Sendable, Hashable, CustomStringConvertible {
  /// Canonical IP text (`192.0.2.1`, `2001:db8::1`); the key for per-server state.
  public let ip: String
  public let isIPv6: Bool
  public let socketAddress: SocketAddress

  /// Builds an endpoint from an IP literal and port; nil if the text is not an IP address.
  public init?(ip: String, port: Int) {
    guard let address = try? SocketAddress(ipAddress: ip, port: port) else { return nil }
    self.socketAddress = address
    if case .v6 = address { isIPv6 = true } else { isIPv6 = false }
    // Normalise through our own formatter so that one address has one key.
    if isIPv6, let v6 = IPv6Address(ip) { self.ip = v6.description } else { self.ip = ip }
  }

  /// An endpoint for an IPv4 address held as octets (from an A record): no text is parsed.
  init(v4 address: IPv4Address, port: Int) {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(NIOBSDSocket.AddressFamily.inet.rawValue)
    addr.sin_port = in_port_t(port).bigEndian
    let o = address.octets
    // sin_addr is in network order: the first octet is the lowest-addressed byte.
    addr.sin_addr.s_addr = (UInt32(o[0]) | UInt32(o[1]) << 8 | UInt32(o[2]) << 16 | UInt32(o[3]) << 24)
    self.socketAddress = SocketAddress(addr, host: "")
    self.isIPv6 = false
    self.ip = address.description
  }

  /// An endpoint for an IPv6 address held as octets (from an AAAA record): no text is parsed.
  init(v6 address: IPv6Address, port: Int) {
    var addr = sockaddr_in6()
    addr.sin6_family = sa_family_t(NIOBSDSocket.AddressFamily.inet6.rawValue)
    addr.sin6_port = in_port_t(port).bigEndian
    addr.sin6_flowinfo = 0
    addr.sin6_scope_id = 0
    withUnsafeMutableBytes(of: &addr.sin6_addr) { raw in
      for (i, b) in address.octets.prefix(16).enumerated() { raw[i] = b }
    }
    self.socketAddress = SocketAddress(addr, host: "")
    self.isIPv6 = true
    self.ip = address.description
  }

  /// The same server on another port (for example 853 for DoT).
  public func with(port: Int) -> ServerEndpoint? { ServerEndpoint(ip: ip, port: port) }

  public var port: Int { socketAddress.port ?? 0 }
  public var description: String { isIPv6 ? "[\(ip)]:\(port)" : "\(ip):\(port)" }

  public static func == (a: ServerEndpoint, b: ServerEndpoint) -> Bool { a.ip == b.ip && a.port == b.port }
  public func hash(into h: inout Hasher) {
    h.combine(ip)
    h.combine(port)
  }
}

/// Address classes the resolver must not query unless allowed.
public enum AddressScope: Sendable {
  case global, loopback, unspecified, linkLocal, multicast

  /// Classifies an IPv4 or IPv6 address.
  public static func of(ip: String) -> AddressScope {
    if let v4 = IPv4Address(ip) { return of(v4) }
    if let v6 = IPv6Address(ip) { return of(v6) }
    return .unspecified
  }

  /// Classifies an IPv4 address.
  public static func of(_ address: IPv4Address) -> AddressScope {
    let o = address.octets
    guard o.count == 4 else { return .unspecified }
    return ofIPv4(o[0], o[1])
  }

  /// Classifies an IPv6 address.
  public static func of(_ address: IPv6Address) -> AddressScope {
    let o = address.octets
    guard o.count == 16 else { return .unspecified }
    let zeroTo10 = o[0..<10].allSatisfy { $0 == 0 }
    if zeroTo10 && o[10] == 0 && o[11] == 0 && o[12] == 0 && o[13] == 0 && o[14] == 0 {
      if o[15] == 1 { return .loopback }
      if o[15] == 0 { return .unspecified }
    }
    if o[0] == 0xFE && (o[1] & 0xC0) == 0x80 { return .linkLocal }
    if o[0] == 0xFF { return .multicast }
    // IPv4-mapped addresses take the scope of the IPv4 address.
    if zeroTo10 && o[10] == 0xFF && o[11] == 0xFF { return ofIPv4(o[12], o[13]) }
    return .global
  }

  /// The scope of an IPv4 address from its first two octets.
  private static func ofIPv4(_ a: UInt8, _ b: UInt8) -> AddressScope {
    if a == 127 { return .loopback }
    if a == 0 { return .unspecified }
    if a == 169 && b == 254 { return .linkLocal }
    if a >= 224 { return .multicast }
    return .global
  }
}

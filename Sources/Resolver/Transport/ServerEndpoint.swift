import NIOCore

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
    if let v4 = IPv4Address(ip) {
      let o = v4.octets
      if o[0] == 127 { return .loopback }
      if o == [0, 0, 0, 0] || o[0] == 0 { return .unspecified }
      if o[0] == 169 && o[1] == 254 { return .linkLocal }
      if o[0] >= 224 { return .multicast }
      return .global
    }
    if let v6 = IPv6Address(ip) {
      let o = v6.octets
      if o == [UInt8](repeating: 0, count: 15) + [1] { return .loopback }
      if o.allSatisfy({ $0 == 0 }) { return .unspecified }
      if o[0] == 0xFE && (o[1] & 0xC0) == 0x80 { return .linkLocal }
      if o[0] == 0xFF { return .multicast }
      // IPv4-mapped addresses take the scope of the IPv4 address.
      if o[0..<10].allSatisfy({ $0 == 0 }) && o[10] == 0xFF && o[11] == 0xFF {
        return of(ip: o[12..<16].map(String.init).joined(separator: "."))
      }
      return .global
    }
    return .unspecified
  }
}

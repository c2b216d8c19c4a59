#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Finds out at start whether the host can reach global IPv4 and IPv6 addresses at all, by
/// connecting a UDP socket (which sends nothing) to a documentation address.
public enum RouteProbe {
  /// False only when `connect()` to 2001:db8::1 port 53 fails with ENETUNREACH (or no IPv6 socket).
  public static func hasIPv6Route() -> Bool {
    let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    address.sin6_port = in_port_t(53).bigEndian
    guard inet_pton(AF_INET6, "2001:db8::1", &address.sin6_addr) == 1 else { return true }
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
      }
    }
    return !(result != 0 && (errno == ENETUNREACH || errno == EHOSTUNREACH || errno == EADDRNOTAVAIL))
  }

  /// The source addresses the kernel would give a UDP socket towards global IPv4 and IPv6
  /// addresses now (connect, which sends nothing, then getsockname), as one byte string; an
  /// absent route adds nothing. It changes when the machine's address does (another network).
  public static func sourceAddresses() -> [UInt8] {
    var out: [UInt8] = []
    var v4 = sockaddr_in()
    v4.sin_family = sa_family_t(AF_INET)
    v4.sin_port = in_port_t(53).bigEndian
    if inet_pton(AF_INET, "192.0.2.1", &v4.sin_addr) == 1 {
      out += source(of: v4, family: AF_INET) { withUnsafeBytes(of: $0.sin_addr) { Array($0) } }
    }
    var v6 = sockaddr_in6()
    v6.sin6_family = sa_family_t(AF_INET6)
    v6.sin6_port = in_port_t(53).bigEndian
    if inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr) == 1 {
      out += source(of: v6, family: AF_INET6) { withUnsafeBytes(of: $0.sin6_addr) { Array($0) } }
    }
    return out
  }

  /// The local address of a UDP socket connected to `remote`, as `bytes` gives it; [] on failure.
  private static func source<Address>(of remote: Address, family: Int32, bytes: (Address) -> [UInt8]) -> [UInt8] {
    let fd = socket(family, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var remote = remote
    let size = socklen_t(MemoryLayout<Address>.size)
    let connected = withUnsafePointer(to: &remote) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) }
    }
    guard connected == 0 else { return [] }
    var local = remote
    var length = size
    let named = withUnsafeMutablePointer(to: &local) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return named == 0 ? bytes(local) : []
  }

  /// False only when `connect()` to 192.0.2.1 port 53 fails with ENETUNREACH (or no IPv4 socket).
  public static func hasIPv4Route() -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(53).bigEndian
    guard inet_pton(AF_INET, "192.0.2.1", &address.sin_addr) == 1 else { return true }
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    return !(result != 0 && (errno == ENETUNREACH || errno == EHOSTUNREACH || errno == EADDRNOTAVAIL))
  }
}

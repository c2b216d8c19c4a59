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

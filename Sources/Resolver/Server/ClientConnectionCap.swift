import NIOCore

/// Open TCP, DoT and DoQ connections per client (an IPv4 address or an IPv6 prefix, `ClientKey`;
/// `server.max-connections-per-client`):
/// one address cannot hold every slot of the listener's caps until their idle timeout. Loopback
/// clients are not limited (a local process can open sockets anyway); nor is a connection whose
/// peer address is unknown. Thread-safe: the TCP event loops and the DoQ channels share one.
final class ClientConnectionCap: Sendable {
  /// Connections one client may hold at once (0: no limit).
  let limit: Int
  /// The IPv6 prefix length a client is counted by (`ClientKey`).
  let ipv6Prefix: Int
  private let open = StateLock<[ClientKey: Int]>([:])

  init(limit: Int, ipv6Prefix: Int = 64) {
    self.limit = limit
    self.ipv6Prefix = ipv6Prefix
  }

  /// The key `address` is counted under (its IPv4 address or IPv6 prefix, `ClientKey`), nil when
  /// it is not limited.
  private func key(_ address: SocketAddress?) -> ClientKey? {
    guard limit > 0, let address else { return nil }
    switch address {
    case .v4, .v6: break
    default: return nil
    }
    guard !CIDR.loopback.contains(where: { $0.contains(address) }) else { return nil }
    return ClientKey(address, ipv6Prefix: ipv6Prefix)
  }

  /// Counts a new connection from `address`; false (nothing counted) when it already holds `limit`.
  func take(_ address: SocketAddress?) -> Bool {
    guard let key = key(address) else { return true }
    return open.withLock { table in
      let count = table[key, default: 0]
      guard count < limit else { return false }
      table[key] = count + 1
      return true
    }
  }

  /// A connection `take` admitted from `address` closed.
  func release(_ address: SocketAddress?) {
    guard let key = key(address) else { return }
    open.withLock { table in
      let count = table[key, default: 0] - 1
      table[key] = count > 0 ? count : nil
    }
  }
}

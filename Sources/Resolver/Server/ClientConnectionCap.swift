import NIOCore

/// Open TCP, DoT and DoQ connections per client (an IPv4 address or an IPv6 /64, `ClientKey`;
/// `server.max-connections-per-client`):
/// one address cannot hold every slot of the listener's caps until their idle timeout. Loopback
/// clients are not limited (a local process can open sockets anyway); nor is a connection whose
/// peer address is unknown. Thread-safe: the TCP event loops and the DoQ channels share one.
final class ClientConnectionCap: Sendable {
  /// Connections one address may hold at once (0: no limit).
  let limit: Int
  private let open = StateLock<[ClientKey: Int]>([:])

  init(limit: Int) { self.limit = limit }

  /// The key `address` is counted under (its IPv4 address or IPv6 /64, `ClientKey`), nil when
  /// it is not limited.
  private func key(_ address: SocketAddress?) -> ClientKey? {
    guard limit > 0, let address, address.ipAddress != nil else { return nil }
    guard !CIDR.loopback.contains(where: { $0.contains(address) }) else { return nil }
    return ClientKey(address)
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

/// Server endpoints built from cached A/AAAA records, kept per address so that asking a server
/// again formats no address text and builds no socket address (each of which allocates). The
/// port is the resolver's Do53 port, the same for every entry. Bounded: emptied when full.
final class EndpointMemo: Sendable {
  /// Entries kept before the table is emptied (a resolver talks to far fewer servers than this).
  static let capacity = 4096
  /// Keyed by the address octets: 4 for IPv4, 16 for IPv6, so the families never collide.
  private let table = StateLock<[[UInt8]: ServerEndpoint]>([:])

  /// The endpoint kept for `octets`, else the one `make` builds (then kept).
  func endpoint(octets: [UInt8], _ make: () -> ServerEndpoint) -> ServerEndpoint {
    if let known = table.withLock({ $0[octets] }) { return known }
    let made = make()
    table.withLock { t in
      if t.count >= Self.capacity { t.removeAll(keepingCapacity: true) }
      t[octets] = made
    }
    return made
  }

  /// Number of endpoints kept (tests).
  var count: Int { table.withLock { $0.count } }
}

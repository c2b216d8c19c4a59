import NIOCore

/// The open client TCP connections: enforces `maxTCPConnections` and the per-address cap, and lets
/// `stop()` close them all.
final class ConnectionTracker: Sendable {
  private let limit: Int
  private let perClient: ClientConnectionCap
  private let channels = StateLock<[ObjectIdentifier: any Channel]>([:])

  init(limit: Int, perClient: ClientConnectionCap) {
    self.limit = limit
    self.perClient = perClient
  }

  /// Why a connection was turned away.
  enum Refusal: Error {
    /// `maxTCPConnections` are open.
    case full
    /// Its address holds the per-client cap already.
    case clientCap
  }

  /// Registers `channel` unless a cap is reached; it is forgotten (and its address's count
  /// released) when it closes.
  func admit(_ channel: any Channel) -> Result<Void, Refusal> {
    let id = ObjectIdentifier(channel)
    let peer = channel.remoteAddress
    let admitted = channels.withLock { open -> Result<Void, Refusal> in
      guard open.count < limit else { return .failure(.full) }
      guard perClient.take(peer) else { return .failure(.clientCap) }
      open[id] = channel
      return .success(())
    }
    if case .success = admitted {
      channel.closeFuture.whenComplete { [self] _ in
        _ = channels.withLock { $0.removeValue(forKey: id) }
        perClient.release(peer)
      }
    }
    return admitted
  }

  /// How many are open now.
  var count: Int { channels.withLock { $0.count } }

  /// Removes and returns every open connection.
  func takeAll() -> [any Channel] {
    channels.withLock { open in
      defer { open.removeAll() }
      return Array(open.values)
    }
  }
}

import NIOCore

/// The open client TCP connections: enforces `maxTCPConnections` and lets `stop()` close them all.
final class ConnectionTracker: Sendable {
  private let limit: Int
  private let channels = StateLock<[ObjectIdentifier: any Channel]>([:])

  init(limit: Int) { self.limit = limit }

  /// Registers `channel` unless the limit is reached; it is forgotten when it closes.
  func admit(_ channel: any Channel) -> Bool {
    let id = ObjectIdentifier(channel)
    let admitted = channels.withLock { open -> Bool in
      guard open.count < limit else { return false }
      open[id] = channel
      return true
    }
    if admitted {
      channel.closeFuture.whenComplete { [self] _ in
        _ = channels.withLock { $0.removeValue(forKey: id) }
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

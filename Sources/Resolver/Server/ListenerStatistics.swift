import Synchronization

/// Counters of the client listener.
public struct ListenerStatistics: Sendable, Hashable {
  /// Messages received from clients (UDP datagrams and TCP frames).
  public var queries = 0
  /// Of those, over TCP.
  public var tcpQueries = 0
  /// Responses with REFUSED (access control, class, zone transfer).
  public var refused = 0
  /// Of the refusals, clients outside the allowed networks.
  public var notAllowed = 0
  /// Responses with FORMERR.
  public var formErrors = 0
  /// Messages answered with nothing (responses, runts, unparsable from disallowed clients).
  public var dropped = 0
  /// TCP connections closed at once because `maxTCPConnections` were open.
  public var tcpConnectionsRejected = 0
  public init() {}
}

/// Mutex-protected `ListenerStatistics` shared by the listener's handlers.
final class ListenerCounters: Sendable {
  private let counters = Mutex(ListenerStatistics())

  var snapshot: ListenerStatistics { counters.withLock { $0 } }

  func update(_ body: (inout ListenerStatistics) -> Void) {
    counters.withLock { body(&$0) }
  }
}

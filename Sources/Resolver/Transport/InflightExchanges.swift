/// Identical upstream queries in flight (same server, name, type and class), so that concurrent
/// resolutions share one query instead of sending duplicates: duplicates would give an
/// off-path attacker more chances to match a forged reply (RFC 5452 §5).
final class InflightExchanges: Sendable {
  struct Key: Hashable, Sendable {
    var server: String
    var port: Int
    var name: DNSName
    var type: RRType
    var qclass: RRClass

    /// Nil for a query without exactly one question (never coalesced).
    init?(_ query: Message, _ endpoint: ServerEndpoint) {
      guard query.questions.count == 1, let q = query.questions.first else { return nil }
      server = endpoint.ip
      port = endpoint.port
      name = q.name.lowercased()
      type = q.type
      qclass = q.qclass
    }
  }

  private let runs = Coalescer<Key, ExchangeResult>()
  /// Exchanges that joined one already in flight instead of sending.
  let joined = Counter()

  /// The result of the exchange in flight for `key`, or of `body` run now by this caller.
  nonisolated(nonsending) func join(_ key: Key, _ body: nonisolated(nonsending) () async -> ExchangeResult) async
    -> ExchangeResult
  {
    let (result, wasJoined) = await runs.run(key, body)
    if wasJoined { joined.increment() }
    return result
  }
}

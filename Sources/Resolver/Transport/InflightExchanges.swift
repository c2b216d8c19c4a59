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

  /// The result of the exchange in flight for `key`, or of `body` run now by this caller. With a
  /// `budget` (seconds), joining one in flight waits at most that long: the exchange in flight
  /// was started by another resolution, with its own time limit; past ours, the result has no
  /// legs (nothing of ours was sent, so no server is blamed for the time).
  nonisolated(nonsending) func join(
    _ key: Key, budget: Double? = nil, _ body: nonisolated(nonsending) () async -> ExchangeResult
  ) async -> ExchangeResult {
    let limit = budget.map { (seconds: $0, expired: ExchangeResult(legs: [], response: nil)) }
    let (result, wasJoined) = await runs.run(key, joinLimit: limit, body)
    if wasJoined { joined.increment() }
    return result
  }
}

import NIOCore

/// Identical upstream queries in flight (same server, name, type and class), so that concurrent
/// resolutions share one query instead of sending duplicates: duplicates would give an
/// off-path attacker more chances to match a forged reply (RFC 5452 §5).
final class InflightExchanges: Sendable {
  struct Key: Hashable, Sendable {
    /// The server's address octets (IPv4 in the low word), its port and family: three words to
    /// hash, where the address as text cost about 1,000 instructions a key (callgrind).
    var addressHigh: UInt64
    var addressLow: UInt64
    var portAndFamily: UInt64
    var name: DNSName
    var type: RRType
    var qclass: RRClass

    /// Nil for a query without exactly one question (never coalesced).
    init?(_ query: borrowing Message, _ endpoint: ServerEndpoint) {
      guard query.questions.count == 1, let q = query.questions.first else { return nil }
      (addressHigh, addressLow, portAndFamily) = Self.words(endpoint.socketAddress)
      name = q.name  // DNSName's == and hash ignore case: no lowercased copy
      type = q.type
      qclass = q.qclass
    }

    /// The address octets as two words and the port with the family (4, 6, or 0 for a Unix path, which
    /// is never a DNS server) as a third.
    static func words(_ address: SocketAddress) -> (UInt64, UInt64, UInt64) {
      switch address {
      case .v4(let a):
        return (0, UInt64(a.address.sin_addr.s_addr), UInt64(a.address.sin_port) | 4 << 16)
      case .v6(let a):
        var addr = a.address.sin6_addr
        let (high, low) = withUnsafeBytes(of: &addr) { raw in
          (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        return (high, low, UInt64(a.address.sin6_port) | 6 << 16 | UInt64(a.address.sin6_scope_id) << 32)
      case .unixDomainSocket:
        return (0, 0, 0)
      }
    }
  }

  private let runs = Coalescer<Key, ExchangeResult>()
  /// Exchanges that took the result of one already in flight instead of sending.
  let joined = Counter()
  /// Exchanges waiting now for the result of one in flight.
  var waiting: Int { runs.joiners }

  /// The result of the exchange in flight for `key`, or of `body` run now by this caller with
  /// the seconds left of `budget` (nil: no budget), on `time`'s clock. With a budget, joining one
  /// in flight waits at most the time left: the exchange in flight was started by another
  /// resolution, with its own time limit; past ours, the result has no legs (nothing of ours was
  /// sent, so no server is blamed for the time). A shared result that the other resolution's
  /// budget cut short is not taken: with time left, this caller asks again (runs the exchange or
  /// joins a newer one).
  @inline(__always)
  nonisolated(nonsending) func join(
    _ key: Key, budget: Double? = nil, time: any TimeSource = SystemTimeSource(),
    _ body: nonisolated(nonsending) (Double?) async -> ExchangeResult
  ) async -> ExchangeResult {
    let end = budget.map { time.now() + $0 }
    while true {
      let left = end.map { max(0, $0 - time.now()) }
      if let left, left < 0.001 { return ExchangeResult(legs: [], response: nil, cutShort: true) }
      let limit = left.map { (seconds: $0, expired: ExchangeResult(legs: [], response: nil, cutShort: true)) }
      let (result, wasJoined) = await runs.run(key, joinLimit: limit) { await body(left) }
      guard wasJoined else { return result }
      // A whole run is ours too. A cut one: ask again while our own time lasts (the loop's first
      // line ends it when our own wait for the run was what ran out).
      if !result.cutShort {
        joined.increment()
        var shared = result
        shared.joined = true
        return shared
      }
    }
  }
}

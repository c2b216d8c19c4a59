/// RFC 7828 edns-tcp-keepalive on one TCP connection (DoT, and Do53 over TCP): every query asks
/// for a long-lived connection (T-20), and each reply's TIMEOUT decides how long the connection may
/// stay idle (T-17, T-21, T-22). Times are nanoseconds.
struct TCPKeepalive {
  /// The idle timeout when the server says nothing (RFC 7766 behaviour): the configured one.
  let configuredIdle: UInt64
  /// The TIMEOUT of the last reply, if that reply carried one.
  private(set) var serverTimeout: UInt64?
  /// A reply said TIMEOUT 0: no new queries, close once the outstanding ones are answered (T-21).
  private(set) var draining = false

  init(configuredIdle: UInt64) { self.configuredIdle = configuredIdle }

  /// How long the connection may stay idle: the configured time, or the server's keepalive less
  /// a margin (10% of it, at least 50 ms) if that is sooner, so that we close first (T-17).
  var idleTimeout: UInt64 {
    guard let serverTimeout else { return configuredIdle }
    let margin = max(serverTimeout / 10, Self.minimumMargin)
    return min(configuredIdle, serverTimeout > margin ? serverTimeout - margin : 0)
  }

  /// The least time left between our close and the server's: a round trip and a wake-up.
  static let minimumMargin: UInt64 = 50_000_000

  /// The option every query over TCP carries: code 11 without a TIMEOUT (T-20; a client sends none).
  static let request = EDNSOption(code: EDNSOption.keepaliveCode, data: [])

  /// `query` with the request in place of any keepalive option it had; one without EDNS (for
  /// a server that does not take it) is left as it is.
  static func requesting(_ query: Message) -> Message {
    guard var edns = query.edns else { return query }
    var asked = query
    edns.options.removeAll { $0.code == EDNSOption.keepaliveCode }
    edns.options.append(request)
    asked.edns = edns
    return asked
  }

  /// Takes the keepalive of one reply to a query that carried the request. A reply's TIMEOUT
  /// replaces any earlier one (T-21); a reply without the option, or with a malformed one (a
  /// server's must hold a 2-octet TIMEOUT), means no support: back to the configured idle time (T-22).
  mutating func noteReply(_ reply: Message) {
    guard let units = Self.timeoutUnits(in: reply) else {
      serverTimeout = nil
      return
    }
    if units == 0 { draining = true }
    serverTimeout = UInt64(units) * 100_000_000  // units of 100 ms
  }

  /// The TIMEOUT (units of 100 ms) of a reply's keepalive option; nil without a well-formed one.
  static func timeoutUnits(in reply: Message) -> UInt16? {
    let option = reply.edns?.options.last { $0.code == EDNSOption.keepaliveCode }
    guard let data = option?.data, data.count == 2 else { return nil }
    return UInt16(data[0]) << 8 | UInt16(data[1])
  }

  /// The keepalive a reply over DoT carries, in seconds (nil: none), as the state records it.
  static func seconds(in reply: Message) -> Double? { timeoutUnits(in: reply).map { Double($0) / 10 } }
}

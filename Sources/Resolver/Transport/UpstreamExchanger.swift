import NIOCore

/// One attempt on one transport within an exchange (a UDP try that came back truncated, then TCP).
public struct ExchangeLeg: Sendable {
  public var transport: TransportKind
  public var rttMs: Double?
  /// The error of a failed leg; nil when the leg produced the response (or a truncated one).
  public var error: TransportError?
  public var truncated: Bool
  /// Why this transport was chosen ("Do53: DoT probe in flight", "DoT: session established").
  public var reason: String? {
    get { transportReason?.description }
    set { transportReason = newValue.map { TransportReason($0) } }
  }
  /// `reason` as the policy gave it, written out only when read.
  public var transportReason: TransportReason?
  /// For encrypted legs: whether the session was resumed from a ticket, and whether 0-RTT early
  /// data was accepted (nil when none was sent).
  public var resumed: Bool?
  public var earlyData: Bool?
  /// True for a leg that timed out only because its time was cut to the caller's budget (less
  /// than the server's whole timeout): not held against the server.
  public var cutShort = false

  public init(transport: TransportKind, rttMs: Double?, error: TransportError?, truncated: Bool, reason: String? = nil)
  {
    self.init(
      transport: transport, rttMs: rttMs, error: error, truncated: truncated,
      transportReason: reason.map { TransportReason($0) })
  }

  /// A leg whose reason is kept as the policy gave it.
  public init(
    transport: TransportKind, rttMs: Double?, error: TransportError?, truncated: Bool, transportReason: TransportReason?
  ) {
    self.transport = transport
    self.rttMs = rttMs
    self.error = error
    self.truncated = truncated
    self.transportReason = transportReason
  }
}

/// What the iteration knows about the server it is asking: for the RFC 9539 table and certificate checks.
public struct ExchangeContext: Sendable {
  public var nsName: DNSName?
  public var zone: DNSName
  /// The most time the whole exchange may take, seconds, waits for a connection and fallbacks
  /// included (the rest of the resolution's deadline); nil leaves each leg its `timeout`.
  public var budget: Double?
  /// True when a layer above already joined identical queries to this server: the
  /// exchanger sends without looking for one to join again.
  public var coalesced = false
  public init(nsName: DNSName?, zone: DNSName, budget: Double? = nil) {
    self.nsName = nsName
    self.zone = zone
    self.budget = budget
  }
}

/// The end of an exchange's budget (`ExchangeContext.budget`) on one clock.
struct ExchangeDeadline: Sendable {
  let end: Double?
  let time: any TimeSource

  init(_ budget: Double?, time: any TimeSource) {
    self.end = budget.map { time.now() + $0 }
    self.time = time
  }

  /// Seconds left (never negative); nil without a budget.
  var remaining: Double? { end.map { max(0, $0 - time.now()) } }

  /// `timeout` cut to the time left; nil when less than a millisecond is left.
  func cap(_ timeout: TimeAmount) -> TimeAmount? {
    guard let left = remaining else { return timeout }
    guard left >= 0.001 else { return nil }
    return min(timeout, .nanoseconds(Int64(left * 1e9)))
  }

  /// The context to pass on with what is left of the budget.
  func passing(_ context: ExchangeContext) -> ExchangeContext {
    var c = context
    c.budget = remaining
    return c
  }
}

/// The result of asking one server one question, over whatever transport(s) were used.
public struct ExchangeResult: Sendable {
  public var legs: [ExchangeLeg]
  public var response: Message?
  /// True when the caller's budget, not the server, ended the exchange early: a wait or a leg's
  /// timeout was cut to the time left and ran out (that leg is `cutShort` too), or a leg was not
  /// sent for want of time. A joiner with more time left does not take it as the server's answer
  /// but asks again.
  public var cutShort: Bool
  /// True when this caller took the result of an identical exchange already in flight
  /// instead of sending: its legs were the other caller's, who records them against the server.
  public var joined = false

  public init(legs: [ExchangeLeg], response: Message?, cutShort: Bool = false) {
    self.legs = legs
    self.response = response
    self.cutShort = cutShort
  }

  /// True when a response came back. Read in place: the resolution's async frames copied the
  /// optional message to compare it with nil.
  var hasResponse: Bool {
    if case .some = response { return true }
    return false
  }

  /// The last local error when no leg left this machine (every one `.io`: no socket, no local
  /// port), else nil: a DoT timeout followed by a Do53 `.io` did reach the server.
  var failedLocally: String? {
    guard response == nil, !legs.isEmpty else { return nil }
    var why: String?
    for leg in legs {
      guard case .io(let text) = leg.error else { return nil }
      why = text
    }
    return why
  }
}

/// Carries a query to one authoritative server. The iteration never names a transport: this seam is
/// where the RFC 9539 policy (Encryption/) decides between Do53, DoT and DoQ.
public protocol UpstreamExchanger: Sendable {
  /// Sends `query` to `server`, within `timeout` per leg.
  nonisolated(nonsending) func exchange(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
  ) async
    -> ExchangeResult
  /// True when queries to this address would go encrypted (for privacy-aware server choice).
  func prefersForPrivacy(_ ip: String) -> Bool
}

extension UpstreamExchanger {
  public func prefersForPrivacy(_ ip: String) -> Bool { false }
}

/// Plain DNS: UDP first, TCP on TC=1.
public struct Do53Exchanger: UpstreamExchanger {
  /// A random query ID for a retry.
  static func freshID() -> UInt16 {
    var random = PooledRandom()
    return UInt16.random(in: 0...UInt16.max, using: &random)
  }

  public let transport: Do53Transport
  let time: any TimeSource
  /// The reason recorded on every leg when Do53 is used on its own (encryption off).
  let reason: TransportReason?

  public init(transport: Do53Transport, time: any TimeSource = SystemTimeSource(), reason: String? = nil) {
    self.transport = transport
    self.time = time
    self.reason = reason.map { TransportReason($0) }
  }

  public nonisolated(nonsending) func exchange(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
  ) async
    -> ExchangeResult
  {
    var result =
      context.coalesced
      ? await exchangeNow(query, server: server, timeout: timeout, budget: context.budget)
      : await exchange(query, server: server, timeout: timeout, budget: context.budget)
    for i in result.legs.indices { result.legs[i].transportReason = reason }
    return result
  }

  /// Do53 exchange: UDP, then TCP if the UDP answer was truncated, unparsable (a datagram larger
  /// than the receive buffer arrives cut) or looked spoofed. An
  /// identical query to the same server already in flight is joined instead of sent again.
  /// With a `budget` (seconds), no leg starts or runs past it: a leg that would start with nothing
  /// left is not sent (and not listed).
  @inline(__always)
  public nonisolated(nonsending) func exchange(
    _ query: Message, server: ServerEndpoint, timeout: TimeAmount, budget: Double? = nil
  ) async -> ExchangeResult {
    guard let key = InflightExchanges.Key(query, server) else {
      return await exchangeNow(query, server: server, timeout: timeout, budget: budget)
    }
    let transport = self.transport
    return await transport.inflight.join(key, budget: budget, time: time) { left in
      await self.exchangeNow(query, server: server, timeout: timeout, budget: left)
    }
  }

  nonisolated(nonsending) func exchangeNow(
    _ query: Message, server: ServerEndpoint, timeout: TimeAmount, budget: Double?
  ) async -> ExchangeResult {
    let deadline = ExchangeDeadline(budget, time: time)
    var legs: [ExchangeLeg] = []
    var sent = query
    transport.cookies.attach(to: &sent, server: server.ip)
    var retriedCookie = false
    // The UDP reply lacked the cookie its server sent before (RFC 7873 §5.3): asked over TCP.
    var missingCookie = false
    while true {
      guard let legTimeout = deadline.cap(timeout) else {
        return ExchangeResult(legs: legs, response: nil, cutShort: true)
      }
      let start = time.now()
      do {
        let response = try await transport.queryUDP(sent, to: server, timeout: legTimeout)
        let rtt = (time.now() - start) * 1000
        transport.cookies.learn(from: response, server: server.ip)
        if response.rcode == .badCookie && !retriedCookie {
          // R-35 (RFC 7873 §5.3): once more over UDP with the server cookie just learned.
          legs.append(ExchangeLeg(transport: .do53UDP, rttMs: rtt, error: nil, truncated: false))
          retriedCookie = true
          transport.cookies.attach(to: &sent, server: server.ip)
          sent.header.id = Self.freshID()  // every query its own ID
          continue
        }
        if !response.header.tc && response.rcode != .badCookie {
          legs.append(ExchangeLeg(transport: .do53UDP, rttMs: rtt, error: nil, truncated: false))
          return ExchangeResult(legs: legs, response: response)
        }
        // Truncated, or BADCOOKIE twice: TCP.
        legs.append(ExchangeLeg(transport: .do53UDP, rttMs: rtt, error: nil, truncated: response.header.tc))
      } catch {
        var leg = ExchangeLeg(transport: .do53UDP, rttMs: nil, error: error, truncated: false)
        leg.cutShort = error == .timeout && legTimeout < timeout
        legs.append(leg)
        // replies with wrong IDs or questions keep arriving: someone may be guessing; TCP.
        // An unparsable reply (oversized datagram cut by the receive buffer, broken compression)
        // also gets one TCP try: the stream carries any size (issue 8, hostile `big` server).
        if case .malformed(let why) = error {
          if why == .missingCookie { missingCookie = true } else { transport.malformed.increment() }
        }
        switch error {
        case .spoofSuspected, .malformed: break
        default: return ExchangeResult(legs: legs, response: nil, cutShort: leg.cutShort)
        }
      }
      break
    }
    guard let tcpTimeout = deadline.cap(timeout) else {
      return ExchangeResult(legs: legs, response: nil, cutShort: true)
    }
    let tcpStart = time.now()
    do {
      let response = try await transport.queryTCP(sent, to: server, timeout: tcpTimeout, cutShort: tcpTimeout < timeout)
      transport.cookies.learn(from: response, server: server.ip)
      // Only when UDP showed the cookie missing: a server that leaves cookies out over TCP alone
      // (a TC=1 answer's retry) keeps its cookie for UDP.
      if missingCookie, DNSCookieJar.cookie(in: response) == nil { transport.cookies.forget(server: server.ip) }
      legs.append(ExchangeLeg(transport: .do53TCP, rttMs: (time.now() - tcpStart) * 1000, error: nil, truncated: false))
      return ExchangeResult(legs: legs, response: response)
    } catch {
      if case .malformed = error { transport.malformed.increment() }
      var leg = ExchangeLeg(transport: .do53TCP, rttMs: nil, error: error, truncated: false)
      leg.cutShort = error == .timeout && tcpTimeout < timeout
      legs.append(leg)
      return ExchangeResult(legs: legs, response: nil, cutShort: leg.cutShort)
    }
  }

}

extension UpstreamExchanger {
  /// Sotto's own exchangers, each nil when it is not that one.
  var asKnown: (policy: EncryptionPolicy?, plain: Do53Exchanger?) {
    (self as? EncryptionPolicy, self as? Do53Exchanger)
  }
}

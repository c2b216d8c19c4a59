import NIOCore
import NIOPosix

/// Plain DNS to authoritative servers over UDP and TCP (RFC 1035, RFC 7766).
/// Each UDP query uses its own connected socket on a kernel-chosen random port, so
/// the kernel drops datagrams from any other address or port; the sockets are not NIO
/// channels but plain ones watched by one epoll thread (`UDPExchangeEngine`), which is cheaper.
public final class Do53Transport: Sendable {
  let group: any EventLoopGroup
  /// Counts responses dropped because they did not match (ID or question), for monitoring.
  let mismatches = Counter()
  /// Counts unparsable replies (UDP or TCP) that matched a query.
  let malformed = Counter()
  /// Identical queries in flight, shared by concurrent resolutions.
  let inflight = InflightExchanges()
  /// DNS Cookies sent with every EDNS query and checked on every reply.
  public let cookies: DNSCookieJar
  /// Our source address, which the cookies depend on; shared with the encryption policy.
  public let addressWatch: LocalAddressWatch
  /// Do53 over TCP: a connection per server, reused (T-14).
  let tcp: Do53TCPPool
  /// Mismatched replies to one UDP query after which it is abandoned for TCP.
  public static let spoofSuspicionThreshold = 3

  /// Do53 on `group`'s loops; `addressWatch` tells the cookies when our address changes.
  public init(group: any EventLoopGroup, addressWatch: LocalAddressWatch = LocalAddressWatch()) {
    self.group = group
    self.addressWatch = addressWatch
    self.cookies = DNSCookieJar(watch: addressWatch)
    self.tcp = Do53TCPPool(group: group, mismatches: mismatches) { addressWatch.generation() }
  }

  /// Number of mismatched (possibly spoofed) responses seen so far.
  public var mismatchedResponses: Int { mismatches.value }

  /// Number of unparsable replies so far (bad compression pointers, cut datagrams, ...).
  public var malformedResponses: Int { malformed.value }

  /// Number of exchanges that joined an identical query in flight instead of sending one.
  public var coalescedQueries: Int { inflight.joined.value }

  /// What the Do53/TCP connection pool did so far (connections opened, reused, evicted, ...).
  public var tcpStatistics: Do53TCPStatistics { tcp.counters.statistics }

  /// Sends `query` over UDP and waits for a matching response. Each query has its own connected
  /// socket on a fresh random source port, watched by the shared `UDPExchangeEngine`.
  public nonisolated(nonsending) func queryUDP(_ query: Message, to server: ServerEndpoint, timeout: TimeAmount)
    async throws(TransportError) -> Message
  {
    try await UDPExchangeEngine.shared.exchange(
      query.serialize(), to: server.socketAddress, matcher: ResponseMatcher(query: query), timeout: timeout,
      mismatches: mismatches, suspicionThreshold: Self.spoofSuspicionThreshold
    ).get()
  }

  /// Sends `query` over TCP on the server's connection (reused and pipelined, `Do53TCPPool`) and
  /// waits for a matching response, all within `timeout` (a connect included). `cutShort`: the
  /// resolution's deadline shortened `timeout`, so a timeout says nothing about the connection.
  public func queryTCP(_ query: Message, to server: ServerEndpoint, timeout: TimeAmount, cutShort: Bool = false)
    async throws(TransportError) -> Message
  {
    try await tcp.query(
      query, matcher: ResponseMatcher(query: query, acceptsMissingCookie: true), to: server.socketAddress,
      timeout: timeout, timeoutRetires: !cutShort)
  }

  static func await(_ future: EventLoopFuture<Message>) async throws(TransportError) -> Message {
    do {
      return try await future.get()
    } catch let e as TransportError {
      throw e
    } catch let e as IOError {
      throw .unreachable(e.description)
    } catch {
      throw .io("\(error)")
    }
  }
}

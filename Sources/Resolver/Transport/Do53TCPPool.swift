import NIOCore
import NIOPosix

/// Do53 over TCP to authoritative servers (a TC=1 answer's retry, R-37; spoof suspicion, R-34;
/// a missing cookie, R-35): one connection per server address, reused by the queries after the
/// first and pipelined, their answers matched by ID and question in any order (T-12 to T-15,
/// RFC 7766 §6.2). Every query with EDNS asks for edns-tcp-keepalive (RFC 7828, T-20): without queries for
/// `idleTimeout`, or for the server's keepalive less 10% if that is sooner, the connection is
/// closed, and a TIMEOUT of 0 takes it out of use (T-17, T-21, `TCPKeepalive`). A query that a reused
/// connection's end cut off goes once more (T-16, RFC 7766 §6.2.4): the server may close an idle
/// connection just as a query is written to it.
///
/// A connection takes no new queries once it has misbehaved: a query on it timed out, or a frame
/// matched no query (a stream out of step cannot be trusted for the next ones); its outstanding
/// queries keep waiting for their answers, and it closes once they are done. A query whose
/// message ID is already in flight on the connection (T-13), or one past `maxOutstanding`, goes
/// on a connection of its own that closes after it.
///
/// Under pressure (T-17, "less under pressure"; as Unbound's outgoing TCP reuse): with more than
/// half of `maxConnections` kept, a connection that falls idle may idle for less, in proportion
/// to the room left, at least `minimumIdleTimeout`; a new server's connection that finds the table
/// full takes the place of the one idle the longest (closed), and only when every kept one has
/// queries outstanding does it carry its query and close.
///
/// A connection opened before this machine's address changed (`addressGeneration`, a laptop on
/// another network) takes no new queries: they go on a new connection from the new address, as
/// encrypted sessions do (T-37), instead of waiting out a timeout on a path that may be gone.
final class Do53TCPPool: Sendable {
  let group: any EventLoopGroup
  /// How long a connection with nothing outstanding stays open at most (T-17; a server's
  /// edns-tcp-keepalive and the pool's pressure can shorten it).
  let idleTimeout: TimeAmount
  /// Queries one connection carries at once.
  let maxOutstanding: Int
  /// Connections kept for reuse at most (one per server): a resolution over many TCP-only
  /// servers cannot pile up idle sockets.
  let maxConnections: Int
  /// The idle time of a connection that falls idle with the table full (T-17 under pressure).
  let minimumIdleTimeout: TimeAmount
  /// How long a connect may take; each query's own timeout bounds its wait for it.
  static let connectTimeout = TimeAmount.seconds(10)
  private let connections = StateLock<[SocketAddress: Do53TCPConnection]>([:])
  /// What the pool did with its connections (`sotto ctl stats`: `upstream.do53TCP`).
  let counters = Do53TCPCounters()
  /// Frames that answered no outstanding query, shared with UDP's count.
  let mismatches: Counter
  /// The number of this machine's source addresses (`LocalAddressWatch.generation`; 0: unknown).
  let addressGeneration: @Sendable () -> UInt64

  init(
    group: any EventLoopGroup, mismatches: Counter = Counter(), idleTimeout: TimeAmount = .seconds(30),
    maxOutstanding: Int = 64, maxConnections: Int = 256, minimumIdleTimeout: TimeAmount = .seconds(1),
    addressGeneration: @escaping @Sendable () -> UInt64 = { 0 }
  ) {
    self.group = group
    self.addressGeneration = addressGeneration
    self.mismatches = mismatches
    self.idleTimeout = idleTimeout
    self.minimumIdleTimeout = max(.zero, min(minimumIdleTimeout, idleTimeout))
    self.maxOutstanding = max(1, maxOutstanding)
    self.maxConnections = max(0, maxConnections)
  }

  /// Sends `query` to `address` on its server's connection (opened if there is none that takes
  /// it) and waits for the reply `matcher` accepts, all within `timeout` (a connect included).
  /// `timeoutRetires`: a timeout is evidence against the connection (false when the caller cut
  /// the query's time short for its resolution's deadline).
  func query(
    _ query: Message, matcher: ResponseMatcher, to address: SocketAddress, timeout: TimeAmount,
    timeoutRetires: Bool = true
  ) async throws(TransportError) -> Message {
    let deadline = NIODeadline.now() + timeout
    let bytes = TCPKeepalive.requesting(query).serialize()
    let (connection, reused) = self.connection(to: address, id: matcher.id)
    do {
      return try await connection.exchange(bytes, matcher: matcher, timeout: timeout, timeoutRetires: timeoutRetires)
    } catch .closed where reused {
      // T-16: the reused connection ended under the query (an idle close crossing it, a reset):
      // once more, within what is left of the time, on the connection the server has now (the
      // ended one left the table before its queries were failed).
      let left = deadline - NIODeadline.now()
      guard left > .zero else { throw .timeout }
      counters.resent.increment()
      let (retry, _) = self.connection(to: address, id: matcher.id)
      return try await retry.exchange(bytes, matcher: matcher, timeout: left, timeoutRetires: timeoutRetires)
    }
  }

  /// How long a connection that falls idle now may stay so (T-17): `idleTimeout` while at most
  /// half the table is taken, then less in proportion to the room left, never under
  /// `minimumIdleTimeout` (which it reaches a little before the table is full).
  func idleTimeUnderPressure() -> TimeAmount {
    let kept = count
    guard maxConnections > 0, kept * 2 > maxConnections else { return idleTimeout }
    let room = Double(max(maxConnections - kept, 0)) / (Double(maxConnections) / 2)
    return max(minimumIdleTimeout, .nanoseconds(Int64(Double(idleTimeout.nanoseconds) * room)))
  }

  /// The kept connection idle the longest, if any is idle (under the pool's lock).
  private static func longestIdle(in table: [SocketAddress: Do53TCPConnection]) -> (SocketAddress, Do53TCPConnection)? {
    var oldest: (SocketAddress, Do53TCPConnection, NIODeadline)? = nil
    for (address, connection) in table {
      guard let since = connection.idleSince() else { continue }
      if let o = oldest, o.2 <= since { continue }
      oldest = (address, connection, since)
    }
    return oldest.map { ($0.0, $0.1) }
  }

  /// The server's connection if it takes a query with message ID `id`, else a new one, kept for
  /// the next queries when nothing usable is there and the table has room, or a place that an
  /// idle connection gives up (T-17). Reserves the query's place on it; `reused`: it was
  /// already open or opening.
  private func connection(to address: SocketAddress, id: UInt16) -> (
    Do53TCPConnection, reused: Bool
  ) {
    let generation = addressGeneration()  // lock-free until a look at our address is due
    let (connection, channel, replaced) = connections.withLock {
      table -> (Do53TCPConnection, EventLoopPromise<any Channel>?, Do53TCPConnection?) in
      var replaced: Do53TCPConnection? = nil
      if let current = table[address] {
        if current.addressGeneration != 0, current.addressGeneration < generation {
          // Opened from the address we had before (T-37): replaced. (One opened before any
          // address was known is not: the first address seen is no change.)
          replaced = current
          // One already out of use was counted when it was taken out.
          if current.isUsable { counters.retired.increment() }
        } else {
          switch current.reserve(id: id, limit: maxOutstanding) {
          case .reserved:
            counters.reusedQueries.increment()
            return (current, nil, nil)
          case .idInFlight, .full: break  // a connection of its own; the kept one stays
          case .unusable: replaced = current
          }
        }
      }
      let loop = group.next()
      let channel = loop.makePromise(of: (any Channel).self)
      let configured = idleTimeout
      let fresh = Do53TCPConnection(
        eventLoop: loop, channel: channel.futureResult, idleTimeout: idleTimeout, mismatches: mismatches,
        retirements: counters.retired, addressGeneration: generation,
        idleTime: { [weak self] in self?.idleTimeUnderPressure() ?? configured }
      ) { [weak self] ended in
        self?.connections.withLock { table in
          if table[address] === ended { table[address] = nil }
        }
      }
      _ = fresh.reserve(id: id, limit: maxOutstanding)
      if replaced != nil || (table[address] == nil && table.count < maxConnections) {
        table[address] = fresh
      } else if table[address] == nil, let (idleAddress, idle) = Self.longestIdle(in: table) {
        // T-17 under pressure: the table is full; the longest idle connection makes room.
        table[idleAddress] = nil
        replaced = idle
        table[address] = fresh
        counters.evicted.increment()
      } else {
        fresh.markOneOff()  // closes after its query
        counters.oneOff.increment()
      }
      return (fresh, channel, replaced)
    }
    // Outside the pool's lock: retiring may end a connection, which takes the lock to leave the
    // table. A replaced connection is out of the table already, so no query can reserve it now.
    replaced?.retire()
    guard let channel else { return (connection, true) }
    counters.opened.increment()
    // On the chosen loop's own thread NIO connects inline, and a connect that fails at once ends
    // the connection there and then.
    ClientBootstrap(group: channel.futureResult.eventLoop)
      .connectTimeout(Self.connectTimeout)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { ch in
        ch.eventLoop.makeCompletedFuture {
          try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedMessageDecoder()))
          try ch.pipeline.syncOperations.addHandler(Do53TCPHandler(connection: connection))
        }
      }
      .connect(to: address)
      .cascade(to: channel)
    return (connection, false)
  }

  /// Connections kept now (open or opening).
  var count: Int { connections.withLock { $0.count } }
}

import NIOCore

/// The extra connections of one DoT session to one server, beside its first (the lanes). NSD and
/// BIND write an answer with Nagle on, so an answer written while an earlier one on the same
/// connection is unacknowledged waits a round trip for the client's ACK: with queries pipelined
/// on one connection, most answers took two round trips instead of one. A query goes on a lane
/// with nothing outstanding; when every open lane has a query waiting, another is opened (up to
/// `maxLanes` in all, the first included; one handshake at a time until the server took one,
/// then more at once) and the query goes meanwhile on the busy lane that clears soonest.
/// Only where the first connection's round trip is at least `minRTTMicros`: a hold costs one
/// round trip, nothing worth a handshake on a LAN or loopback, where one connection reads
/// several answers in one wake-up and more would cost CPU for each.
///
/// RFC 7766 §6.2.2 recommends one connection per server (T-15); this keeps to it while queries
/// come one at a time, and opens more only under concurrent load, bounded (PowerDNS Recursor
/// keeps up to 10 idle TCP/DoT connections per server and thread). The RFC 9539 state is the
/// first connection's alone: an extra lane's handshake failure or end changes nothing in it, and
/// a query its end cut off is sent again on the first.
///
/// Engine-thread confined: everything after `init` runs on the engine thread.
final class DoTLanes: @unchecked Sendable {
  /// What opening another connection to the server takes.
  struct Opener: Sendable {
    var endpoint: ServerEndpoint
    var expectedName: DNSName?
    var context: DoTClientContext
    var handshakeTimeout: TimeAmount
    var idleTimeout: TimeAmount
    var counters: EncryptedReplyCounters
    var onTicket: @Sendable ([UInt8]) -> Void
  }

  /// After an extra lane's handshake fails or it ends unwelcome (`laneEnded`), none is tried
  /// for this long (nanoseconds).
  static let quietAfterFailure: UInt64 = 30_000_000_000

  let maxLanes: Int
  /// The first connection's smallest round trip (`tcpi_min_rtt`) for extra lanes, microseconds.
  let minRTTMicros: UInt32
  private let opener: Opener
  private let engine: UDPExchangeEngine
  private var extras: [DoTSocketSession] = []
  /// Handshakes of extra lanes under way.
  private var opening = 0
  private var ended = false
  private var quietUntil: UInt64 = 0

  init(maxLanes: Int, minRTTMicros: UInt32, opener: Opener, engine: UDPExchangeEngine) {
    self.maxLanes = max(1, maxLanes)
    self.minRTTMicros = minRTTMicros
    self.opener = opener
    self.engine = engine
  }

  /// The lane for the next query (`choose`); with every lane busy, another is opened for the
  /// queries after this one.
  func lane(first: DoTSocketSession) -> DoTSocketSession {
    guard first.takesQueries, first.rttMicros >= minRTTMicros else { return first }
    let (lane, idle) = Self.choose(first: first, extras: extras)
    if !idle { openAnother() }
    return lane
  }

  /// `first` if it has nothing outstanding, else an extra lane with nothing outstanding (`idle`),
  /// else the busy lane that clears soonest (`clearAt`, `first` on a tie): the one whose answers
  /// the server will have seen acknowledged first, so this query's answer is held the least.
  /// Picking by the number outstanding instead left an answer held for up to a round trip behind
  /// one sent just before on a lane, while another lane's last query had been sent a round trip
  /// earlier.
  static func choose<Lane: DoTLane>(first: Lane, extras: [Lane]) -> (lane: Lane, idle: Bool) {
    guard first.outstanding > 0 else { return (first, true) }
    var best = first
    for lane in extras where lane.takesQueries {
      if lane.outstanding == 0 { return (lane, true) }
      if lane.clearAt < best.clearAt { best = lane }
    }
    return (best, false)
  }

  /// A lane's `clearAt` after a query is sent on it at `now` with `outstanding` others waiting:
  /// one round trip after the query, or after the lane's previous `clearAt` if that is later (the
  /// query's answer is then held until then, and the ACK of it is back a round trip after). With
  /// nothing outstanding, the ACK of the lane's last answer rides on the query: no hold.
  static func clearAt(sendingAt now: UInt64, previous: UInt64, outstanding: Int, rttMicros: UInt32) -> UInt64 {
    (outstanding == 0 ? now : max(now, previous)) &+ UInt64(rttMicros) &* 1000
  }

  /// The session ended or was closed: the extra lanes take no new queries and close once their
  /// outstanding ones are answered.
  func end() {
    ended = true
    let all = extras
    extras = []
    for lane in all { lane.finishAndClose() }
  }

  private func openAnother() {
    // At most one handshake more under way than extra lanes are up: one to start with, more only
    // once the server took one (one handshake, then two, then four: eight connections are up
    // after three handshake times instead of seven).
    guard opening <= extras.count, !ended, 1 + extras.count + opening < maxLanes, UDPExchangeEngine.now() >= quietUntil
    else { return }
    // A lane retired for a timeout and still finishing: none until it ends (then `quietAfterFailure`).
    guard !extras.contains(where: { $0.timedOut }) else { return }
    opening += 1
    Task(executorPreference: engine.taskExecutor) { await self.open() }
  }

  /// Opens one more connection (a full handshake: the session's tickets stay for its own
  /// reconnections, each used once, OE-22) and adds it once the handshake is done.
  private func open() async {
    let opener = self.opener
    let slot = LaneSlot()
    let lane = try? await DoTSocketSession.open(
      engine: engine, endpoint: opener.endpoint, expectedName: opener.expectedName, context: opener.context,
      resumption: nil, connectTimeout: opener.handshakeTimeout, handshakeTimeout: opener.handshakeTimeout,
      idleTimeout: opener.idleTimeout, status: DoTConnectionStatus(), counters: opener.counters, lowPriority: true,
      isExtraLane: true, onTicket: opener.onTicket,
      onClose: { [weak self] failure in self?.laneEnded(failure, slot.lane) }
    ).0
    // On the engine thread, where its onClose reads the slot (an end before this finds none:
    // an unwelcome one).
    engine.execute {
      slot.lane = lane
      self.opened(lane)
    }
  }

  private func opened(_ lane: DoTSocketSession?) {
    opening -= 1
    guard let lane else { return pause() }
    opener.counters.dotLanes.increment()
    if ended { return lane.finishAndClose() }
    // Ended already (the server closed it with its handshake's last flight): not kept, and no
    // other for a while.
    guard lane.takesQueries else { return pause() }
    extras.append(lane)
  }

  /// No extra lane opens for `quietAfterFailure` from now.
  private func pause() { quietUntil = UDPExchangeEngine.now() &+ Self.quietAfterFailure }

  /// An extra lane ended (or, after a TIMEOUT of 0, went out of use). One that failed, was
  /// retired for a timeout, answered nothing or was closed at the server's request keeps others
  /// off for `quietAfterFailure`: a server that cuts, ignores or refuses extra connections gets
  /// no handshake at every overlap. Drops the lanes that take no queries any more.
  private func laneEnded(_ failure: EncryptedFailure, _ lane: DoTSocketSession?) {
    let unwelcome = lane.map { $0.timedOut || $0.answered == 0 || $0.serverAskedToClose } ?? true
    if failure != .cleanClose || unwelcome { pause() }
    extras.removeAll { !$0.takesQueries }
  }
}

/// The extra lane a lane's own `onClose` reports for (set once it is made; engine-thread confined).
private final class LaneSlot: @unchecked Sendable {
  weak var lane: DoTSocketSession?
}

/// What `DoTLanes.choose` reads of a connection.
protocol DoTLane: AnyObject {
  /// Queries sent and not yet answered or timed out.
  var outstanding: Int { get }
  /// Whether a query sent now goes out.
  var takesQueries: Bool { get }
  /// From when a query sent on it finds no earlier answer held at the server (engine clock).
  var clearAt: UInt64 { get }
}

extension DoTSocketSession: DoTLane {}

/// What the Do53/TCP connection pool did (`Do53TCPPool`), in `sotto ctl stats` as
/// `upstream.do53TCP`.
public struct Do53TCPStatistics: Sendable, Codable, Hashable {
  /// Connections opened to servers, one-off ones included.
  public var opened = 0
  /// Queries that went on a connection already open or opening (T-12).
  public var reusedQueries = 0
  /// Connections opened for one query and closed after it: its message ID was in flight on the
  /// server's connection (T-13), that connection was full, or the table was full with none idle.
  public var oneOff = 0
  /// Kept connections closed, idle, to make room for another server's (T-17 under pressure).
  public var evicted = 0
  /// Connections taken out of use before their idle close: a query on it timed out, a frame
  /// matched no query, the server's keepalive was 0 (T-21), or this machine's address changed
  /// since it was opened (T-37). Each closes once its outstanding queries are done.
  public var retired = 0
  /// Queries sent again on a new connection after a reused one ended under them (T-16).
  public var resent = 0

  public init(
    opened: Int = 0, reusedQueries: Int = 0, oneOff: Int = 0, evicted: Int = 0, retired: Int = 0, resent: Int = 0
  ) {
    self.opened = opened
    self.reusedQueries = reusedQueries
    self.oneOff = oneOff
    self.evicted = evicted
    self.retired = retired
    self.resent = resent
  }

  enum CodingKeys: String, CodingKey { case opened, reusedQueries, oneOff, evicted, retired, resent }

  /// Decodes the counters; those a `sotto` of another version did not send read as 0.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      opened: try c.counter(.opened), reusedQueries: try c.counter(.reusedQueries), oneOff: try c.counter(.oneOff),
      evicted: try c.counter(.evicted), retired: try c.counter(.retired), resent: try c.counter(.resent))
  }
}

/// The pool's live counters behind `Do53TCPStatistics`.
final class Do53TCPCounters: Sendable {
  let opened = Counter()
  let reusedQueries = Counter()
  let oneOff = Counter()
  let evicted = Counter()
  let retired = Counter()
  let resent = Counter()

  /// The counters now.
  var statistics: Do53TCPStatistics {
    Do53TCPStatistics(
      opened: opened.value, reusedQueries: reusedQueries.value, oneOff: oneOff.value, evicted: evicted.value,
      retired: retired.value, resent: resent.value)
  }
}

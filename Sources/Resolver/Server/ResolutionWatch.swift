/// Client queries whose answer has not gone yet, each with the time by which it must have gone.
///
/// Every resolution ends by the resolution deadline, with SERVFAIL at worst, so nothing should
/// ever be overdue here. The listener's UDP loop answers an overdue query with SERVFAIL itself,
/// counts and logs it (`resolutionsOverdue`), and drops the resolution's answer should it come
/// later: a resolution that never ends (a bug) then costs its client one late SERVFAIL, not
/// silence. Times are nanoseconds of the monotonic clock. A plain value: the owner locks it.
struct ResolutionWatch<Item> {
  private var entries: [UInt64: (deadline: UInt64, item: Item)] = [:]
  /// Tokens of queries answered as overdue whose resolution has not ended, with their item.
  private var answeredOverdue: [UInt64: Item] = [:]
  private var lastToken: UInt64 = 0

  /// Queries waiting for their answer.
  var count: Int { entries.count }

  /// Watches one query that must be answered by `deadline`; its token (never 0).
  mutating func begin(_ item: Item, deadline: UInt64) -> UInt64 {
    lastToken &+= 1
    entries[lastToken] = (deadline, item)
    return lastToken
  }

  /// The resolution of `token` ended: `.answer` while its answer is still to go, `.late` with the
  /// item when the query was answered as overdue meanwhile (its answer must be dropped).
  mutating func finish(_ token: UInt64) -> Finish {
    if entries.removeValue(forKey: token) != nil { return .answer }
    if let item = answeredOverdue.removeValue(forKey: token) { return .late(item) }
    return .answer
  }

  enum Finish {
    case answer
    case late(Item)
  }

  /// Removes and returns the queries whose deadline is at or before `now` (they are then
  /// answered as overdue), and the earliest deadline left.
  mutating func takeOverdue(now: UInt64) -> (overdue: [Item], next: UInt64?) {
    var due: [UInt64] = []
    var next: UInt64?
    for (token, entry) in entries {
      if entry.deadline <= now {
        due.append(token)
      } else {
        next = min(next ?? .max, entry.deadline)
      }
    }
    var overdue: [Item] = []
    for token in due {
      guard let entry = entries.removeValue(forKey: token) else { continue }
      answeredOverdue[token] = entry.item
      overdue.append(entry.item)
    }
    return (overdue, next)
  }
}

extension QueryProcessor {
  /// The listener's answer for a query whose resolution is still running `waitedMs` after the
  /// query came from `client`: SERVFAIL, counted in `resolutionsOverdue` and logged as an error
  /// (a resolution that overruns its deadline is a bug). Nil for a query that does not parse
  /// (such a query was answered at once and never waits).
  func overdueAnswer(to raw: [UInt8], from client: String, waitedMs: UInt64, via transport: ClientTransport)
    -> [UInt8]?
  {
    guard let parsed = try? Message.parse(raw) else { return nil }
    counters.update { $0.resolutionsOverdue += 1 }
    let question = parsed.questions.first.map { "\($0.name) \($0.type)" } ?? "?"
    logger.error(
      """
      resolution of \(question) still running \(waitedMs) ms after the query came\(transport.logSuffix), \
      past the resolution deadline: answered SERVFAIL (counted in resolutionsOverdue)
      """,
      metadata: ["client": "\(client)"])
    return ResponseBuilder.serialize(ResponseBuilder.error(.servFail, to: parsed), for: parsed, via: transport)
  }

  /// Logs that a resolution answered SERVFAIL as overdue has ended; its own answer is dropped.
  func noteLateEnd(from client: String, tookMs: UInt64? = nil) {
    logger.warning(
      "a resolution answered SERVFAIL as overdue ended\(tookMs.map { " after \($0) ms" } ?? ""); its answer is dropped",
      metadata: ["client": "\(client)"])
  }
}

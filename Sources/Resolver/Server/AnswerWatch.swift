import NIOCore

/// The overdue-answer watch of one connection's queries (TCP, DoT, DoQ), kept on its event loop:
/// one NIO timer per unanswered query. Past the deadline the handler answers SERVFAIL
/// (`QueryProcessor.overdueAnswer`); the resolution's own answer, if it comes later, is dropped.
struct AnswerWatch {
  /// How long a query may wait for its answer (nil: no watch).
  let deadline: TimeAmount?
  private var watched: [UInt64: Scheduled<Void>] = [:]
  private var nextToken: UInt64 = 0

  init(deadline: TimeAmount?) { self.deadline = deadline }

  /// A token for a new query. With a deadline, `overdue(token, began)` runs on `loop` when it
  /// passes with the query unanswered.
  mutating func begin(
    on loop: any EventLoop, overdue: @escaping @Sendable (_ token: UInt64, _ began: NIODeadline) -> Void
  ) -> UInt64 {
    nextToken += 1
    let token = nextToken
    if let deadline {
      let began = NIODeadline.now()
      watched[token] = loop.scheduleTask(in: deadline) { overdue(token, began) }
    }
    return token
  }

  /// Whether the query's own answer may go out; false when it was answered as overdue already.
  mutating func finish(_ token: UInt64) -> Bool {
    guard deadline != nil else { return true }
    guard let timer = watched.removeValue(forKey: token) else { return false }
    timer.cancel()
    return true
  }

  /// Whether the query is still waiting for its answer.
  func isWaiting(_ token: UInt64) -> Bool { watched[token] != nil }

  /// Takes a query answered as overdue out of the watch: its own answer will be dropped.
  mutating func expire(_ token: UInt64) { watched[token] = nil }

  /// Stops every timer (the connection is gone).
  mutating func cancelAll() {
    for timer in watched.values { timer.cancel() }
    watched.removeAll()
  }

  /// Milliseconds since `began`.
  static func waitedMs(since began: NIODeadline) -> UInt64 {
    UInt64(max(0, (NIODeadline.now() - began).nanoseconds / 1_000_000))
  }
}

import NIOCore

/// One event-loop timer for all the per-query deadlines of a DoT or DoQ session, armed for the
/// earliest one outstanding. A scheduled task per query, cancelled when its answer came, cost
/// several allocations and a timer-heap insert and removal for every encrypted exchange; with one
/// timeout for every query a later query never needs the timer moved. Event-loop bound.
struct QueryDeadlineTimer {
  private var task: Scheduled<Void>?
  private var armedFor: NIODeadline?

  /// Makes sure the timer fires by `deadline`; `expire` runs on `loop` when it fires and must call
  /// `fired()` first, then cover the deadlines that are still outstanding.
  mutating func cover(_ deadline: NIODeadline, on loop: any EventLoop, expire: @escaping () -> Void) {
    if task != nil, let armed = armedFor, armed <= deadline { return }
    task?.cancel()
    armedFor = deadline
    task = loop.assumeIsolated().scheduleTask(deadline: deadline, expire)
  }

  /// Forgets the timer that just fired.
  mutating func fired() {
    task = nil
    armedFor = nil
  }

  /// Splits outstanding queries into those whose deadline is at or before `now` and the earliest
  /// deadline among the rest (nil if none is left).
  static func expired<Key>(
    _ pending: some Sequence<(key: Key, deadline: NIODeadline)>, now: NIODeadline
  ) -> (keys: [Key], next: NIODeadline?) {
    var keys: [Key] = []
    var next: NIODeadline?
    for (key, deadline) in pending {
      if deadline <= now {
        keys.append(key)
      } else if next.map({ deadline < $0 }) ?? true {
        next = deadline
      }
    }
    return (keys, next)
  }

  /// Stops the timer (the session ended).
  mutating func cancel() {
    task?.cancel()
    fired()
  }
}

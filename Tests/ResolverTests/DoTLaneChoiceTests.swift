import Testing

@testable import Resolver

/// Which of a DoT session's connections a query goes on (`DoTLanes.choose`) and when a connection
/// stops holding answers for Nagle (`DoTLanes.clearAt`), as pure functions of what the session
/// knows of each connection.
@Suite struct DoTLaneChoiceTests {
  final class Lane: DoTLane {
    let name: String
    let outstanding: Int
    let takesQueries: Bool
    let clearAt: UInt64
    init(_ name: String, outstanding: Int, clearAt: UInt64 = 0, takesQueries: Bool = true) {
      (self.name, self.outstanding, self.clearAt, self.takesQueries) = (name, outstanding, clearAt, takesQueries)
    }
  }

  private func choice(_ first: Lane, _ extras: [Lane]) -> (String, Bool) {
    let (lane, idle) = DoTLanes.choose(first: first, extras: extras)
    return (lane.name, idle)
  }

  @Test func anIdleFirstConnectionTakesTheQuery() {
    #expect(choice(Lane("first", outstanding: 0), [Lane("x", outstanding: 0)]) == ("first", true))
  }

  @Test func anIdleExtraConnectionComesBeforeAnyBusyOne() {
    let extras = [Lane("a", outstanding: 1, clearAt: 5), Lane("b", outstanding: 0, clearAt: 90)]
    #expect(choice(Lane("first", outstanding: 1, clearAt: 1), extras) == ("b", true))
  }

  /// All busy: the connection the server will have seen acknowledged first, although it has more
  /// queries waiting than another whose last query went just now.
  @Test func withAllBusyTheOneThatClearsSoonestTakesIt() {
    let extras = [Lane("recent", outstanding: 1, clearAt: 9_000), Lane("older", outstanding: 2, clearAt: 2_000)]
    #expect(choice(Lane("first", outstanding: 1, clearAt: 7_000), extras) == ("older", false))
    #expect(choice(Lane("first", outstanding: 3, clearAt: 1_000), extras) == ("first", false))
  }

  @Test func theFirstConnectionWinsATieAndClosingOnesAreSkipped() {
    let extras = [
      Lane("same", outstanding: 1, clearAt: 4_000), Lane("closing", outstanding: 0, takesQueries: false),
      Lane("closing2", outstanding: 1, clearAt: 10, takesQueries: false),
    ]
    #expect(choice(Lane("first", outstanding: 1, clearAt: 4_000), extras) == ("first", false))
  }

  /// Round trip 10 ms. Two queries at -11 and -9 ms: the first's answer leaves the server at
  /// -6 and its ACK is back at +4, so the second's answer, written at -4, is held until +4 and
  /// its ACK is back at +14; a query sent at t reaches the server at t + 5, so from t = 9 on
  /// none is held.
  @Test func clearAtFollowsAChainOfHeldAnswers() {
    let ms: UInt64 = 1_000_000
    let base: UInt64 = 100 * ms
    let afterFirst = DoTLanes.clearAt(sendingAt: base - 11 * ms, previous: 0, outstanding: 0, rttMicros: 10_000)
    #expect(afterFirst == base - 1 * ms)
    let afterSecond = DoTLanes.clearAt(
      sendingAt: base - 9 * ms, previous: afterFirst, outstanding: 1, rttMicros: 10_000)
    #expect(afterSecond == base + 9 * ms)
    // Once nothing is outstanding, the next query carries the ACK: one round trip from it.
    #expect(
      DoTLanes.clearAt(sendingAt: base, previous: afterSecond, outstanding: 0, rttMicros: 10_000) == base + 10 * ms)
  }
}

import Testing

@testable import Resolver

/// When the engine runs a probe's handshake step (OE-10): at once in a turn without other work,
/// else only after `patience` of waiting.
@Suite struct LowPriorityLaneTests {
  @Test func runsAtOnceWhenTheEngineHasNothingElseToDo() {
    var lane = LowPriorityLane()
    let r1 = lane.mayRun(busy: false, now: 1_000)
    #expect(r1)
    #expect(lane.waitingSince == 0)
  }

  @Test func waitsBehindOtherWorkForAtMostItsPatience() {
    var lane = LowPriorityLane()
    let start: UInt64 = 5_000_000
    let r2 = lane.mayRun(busy: true, now: start)
    #expect(!r2)
    #expect(lane.waitingSince == start)
    let r3 = lane.mayRun(busy: true, now: start + LowPriorityLane.patience - 1)
    #expect(!r3)
    let r4 = lane.mayRun(busy: true, now: start + LowPriorityLane.patience)
    #expect(r4)
    // The next piece waits its own patience again.
    let r5 = lane.mayRun(busy: true, now: start + LowPriorityLane.patience + 1)
    #expect(!r5)
    // An idle turn runs it, and forgets the wait.
    let r6 = lane.mayRun(busy: false, now: start + LowPriorityLane.patience + 2)
    #expect(r6)
    #expect(lane.waitingSince == 0)
  }

  @Test func takesTheFirstStreamOfTheTurnAndForgetsTheRest() {
    var lane = LowPriorityLane()
    let none = lane.take()
    #expect(none == nil)
    lane.note(fd: 7, events: 1, id: 70)
    lane.note(fd: 9, events: 4, id: 90)
    let first = lane.take()
    #expect(first?.fd == 7)
    #expect(first?.events == 1)
    #expect(first?.id == 70)
    #expect(lane.deferred.isEmpty)
    let after = lane.take()
    #expect(after == nil)
  }

  @Test func idleForgetsAWait() {
    var lane = LowPriorityLane()
    _ = lane.mayRun(busy: true, now: 42)
    lane.idle()
    #expect(lane.waitingSince == 0)
    let r7 = lane.mayRun(busy: true, now: 43)
    #expect(!r7)
  }
}

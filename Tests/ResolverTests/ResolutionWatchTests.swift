import Testing

@testable import Resolver

/// The listener's watch on overdue answers, as a plain value.
struct ResolutionWatchTests {
  @Test func overdueQueriesAreTakenOnceAndTheirLateEndIsToldApart() {
    var watch = ResolutionWatch<String>()
    let a = watch.begin("a", deadline: 10)
    let b = watch.begin("b", deadline: 20)
    let c = watch.begin("c", deadline: 30)
    #expect(Set([a, b, c]).count == 3 && !Set([a, b, c]).contains(0))
    // Answered in time: its answer goes.
    #expect(isAnswer(watch.finish(a)))
    // At 25, only b is overdue; c's deadline is the next one.
    let first = watch.takeOverdue(now: 25)
    #expect(first.overdue == ["b"] && first.next == 30)
    #expect(watch.count == 1)
    // Taken once: the next pass finds nothing new.
    let again = watch.takeOverdue(now: 26)
    #expect(again.overdue.isEmpty && again.next == 30)
    // b's resolution ends late: its answer must be dropped, once.
    guard case .late(let item) = watch.finish(b) else {
      Issue.record("b's late end was not told apart")
      return
    }
    #expect(item == "b")
    #expect(isAnswer(watch.finish(c)))
    #expect(watch.count == 0)
    #expect(watch.takeOverdue(now: 100).next == nil)
  }

  @Test func aQueryDueExactlyNowIsOverdue() {
    var watch = ResolutionWatch<Int>()
    _ = watch.begin(1, deadline: 50)
    #expect(watch.takeOverdue(now: 49).overdue.isEmpty)
    #expect(watch.takeOverdue(now: 50).overdue == [1])
  }

  private func isAnswer(_ finish: ResolutionWatch<String>.Finish) -> Bool {
    if case .answer = finish { return true }
    return false
  }
}

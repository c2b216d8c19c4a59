import Foundation
import Synchronization
import Testing

@testable import Resolver

/// The listeners' pool of long-lived resolution tasks: jobs run, a finished task takes the next
/// job instead of a new task starting, at most `maxIdle` tasks wait, and a waiting task keeps
/// nothing of its last job.
@Suite struct TaskPoolTests {
  /// Waits (up to 5 s) until `condition` holds.
  private func eventually(_ condition: () -> Bool) async -> Bool {
    for _ in 0..<500 {
      if condition() { return true }
      try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
  }

  @Test func sequentialJobsReuseOneTask() async {
    let pool = TaskPool(executor: nil, maxIdle: 4)
    defer { pool.close() }
    let ran = Mutex<[Int]>([])
    for i in 0..<20 {
      pool.run { ran.withLock { $0.append(i) } }
      // The task that ran job i is waiting again before job i+1 is handed out.
      #expect(await eventually { ran.withLock { $0.count } == i + 1 && pool.idleCount == 1 })
    }
    #expect(ran.withLock { $0 } == Array(0..<20), "every job ran, in order")
    #expect(pool.tasksStarted == 1, "one task ran all twenty jobs")
  }

  @Test func concurrentJobsGetTheirOwnTasksAndAtMostMaxIdleWait() async {
    let pool = TaskPool(executor: nil, maxIdle: 3)
    defer { pool.close() }
    let started = Atomic<Int>(0)
    let gate = Mutex<[CheckedContinuation<Void, Never>]>([])
    for _ in 0..<8 {
      pool.run {
        started.add(1, ordering: .sequentiallyConsistent)
        await withCheckedContinuation { c in gate.withLock { $0.append(c) } }
      }
    }
    // All eight run at once: none waits for another to finish.
    #expect(await eventually { gate.withLock { $0.count } == 8 })
    #expect(pool.tasksStarted == 8)
    for c in gate.withLock({ g in
      defer { g = [] }
      return g
    }) { c.resume() }
    #expect(await eventually { pool.idleCount == 3 }, "three tasks wait for work, the other five ended")
    try? await Task.sleep(for: .milliseconds(50))
    #expect(pool.idleCount == 3)
    // The next jobs go to the waiting tasks.
    let done = Atomic<Int>(0)
    for _ in 0..<3 { pool.run { done.add(1, ordering: .sequentiallyConsistent) } }
    #expect(await eventually { done.load(ordering: .sequentiallyConsistent) == 3 })
    #expect(pool.tasksStarted == 8, "no new task for jobs that found a waiting one")
  }

  @Test func aWaitingTaskReleasesItsLastJob() async {
    final class Payload: Sendable {}
    let pool = TaskPool(executor: nil, maxIdle: 2)
    defer { pool.close() }
    weak var seen: Payload?
    do {
      let payload = Payload()
      seen = payload
      pool.run { _ = payload }
    }
    #expect(await eventually { pool.idleCount == 1 })
    #expect(await eventually { seen == nil }, "the finished job's captures are freed while the task waits")
  }

  @Test func closeEndsTheWaitingTasks() async {
    let pool = TaskPool(executor: nil, maxIdle: 4)
    for _ in 0..<3 { pool.run {} }
    #expect(await eventually { pool.idleCount == 3 })
    pool.close()
    #expect(pool.idleCount == 0)
    // After close a job still runs, on a task that then ends instead of waiting.
    let ran = Atomic<Bool>(false)
    pool.run { ran.store(true, ordering: .sequentiallyConsistent) }
    #expect(await eventually { ran.load(ordering: .sequentiallyConsistent) })
    try? await Task.sleep(for: .milliseconds(50))
    #expect(pool.idleCount == 0)
  }

  @Test func resolutionsRunOnTheEngineThread() async {
    // The listeners' pool prefers the engine's executor, so a resolution's jobs run on its thread.
    let onEngine = Mutex<Bool?>(nil)
    UDPExchangeEngine.resolutions.run {
      onEngine.withLock { $0 = UDPExchangeEngine.shared.isEngineThread }
    }
    #expect(await eventually { onEngine.withLock { $0 } != nil })
    #expect(onEngine.withLock { $0 } == true)
  }
}

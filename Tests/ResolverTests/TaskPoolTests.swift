import Foundation
import Synchronization
import Testing

@testable import Resolver

/// The listeners' pool of long-lived resolution tasks: jobs run, a finished task takes the next
/// job instead of a new task starting, at most `maxIdle` tasks wait, and a waiting task keeps
/// nothing of its last job.
@Suite struct TaskPoolTests {
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
    let gate = Mutex<[CheckedContinuation<Void, Never>]>([])
    for _ in 0..<8 {
      pool.run {
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
    let ranWith = Mutex<ObjectIdentifier?>(nil)
    weak var seen: Payload?
    do {
      let payload = Payload()
      seen = payload
      pool.run { ranWith.withLock { $0 = ObjectIdentifier(payload) } }
    }
    #expect(await eventually { pool.idleCount == 1 })
    #expect(ranWith.withLock { $0 } != nil, "the job ran with its capture")
    #expect(await eventually { seen == nil }, "the finished job's captures are freed while the task waits")
  }

  @Test func closeEndsTheWaitingTasks() async {
    // A waiting task holds its pool, so the pool is freed only once every waiting task ended.
    weak var weakPool: TaskPool?
    do {
      let pool = TaskPool(executor: nil, maxIdle: 4)
      weakPool = pool
      for _ in 0..<3 { pool.run {} }
      #expect(await eventually { pool.idleCount == 3 })
      pool.close()
      #expect(pool.idleCount == 0)
      // After close a job still runs, on a task that then ends instead of waiting.
      let ran = Atomic<Bool>(false)
      pool.run { ran.store(true, ordering: .sequentiallyConsistent) }
      #expect(await eventually { ran.load(ordering: .sequentiallyConsistent) })
    }
    #expect(await eventually { weakPool == nil }, "the waiting tasks and the one after close ended")
  }

  @Test func concurrentSubmittersRunEveryJobOnce() async {
    // Submitting threads race tasks that are parking: no job may be lost or run twice.
    let pool = TaskPool(executor: nil, maxIdle: 2)
    defer { pool.close() }
    let runs = Mutex<[Int]>(Array(repeating: 0, count: 4 * 1_000))
    let threads = (0..<4).map { t in
      Thread {
        for i in 0..<1_000 {
          let slot = t * 1_000 + i
          pool.run { runs.withLock { $0[slot] += 1 } }
        }
      }
    }
    for thread in threads { thread.start() }
    #expect(await eventually { runs.withLock { $0.reduce(0, +) } == 4_000 })
    try? await Task.sleep(for: .milliseconds(50))
    #expect(runs.withLock { $0.allSatisfy { $0 == 1 } }, "every job ran exactly once")
    #expect(
      await eventually { pool.idleCount == min(2, pool.tasksStarted) }, "up to two tasks wait, the others ended")
  }

  @Test func aReusedTaskStillRunsOnTheEngineThread() async {
    // The listeners' pool prefers the engine's executor: a resolution's jobs run on its thread,
    // on a new task and on one taken from the waiting ones alike.
    let pool = TaskPool(executor: UDPExchangeEngine.shared.taskExecutor, maxIdle: 1)
    defer { pool.close() }
    let onEngine = Mutex<[Bool]>([])
    for expected in 1...2 {
      pool.run { onEngine.withLock { $0.append(UDPExchangeEngine.shared.isEngineThread) } }
      #expect(await eventually { onEngine.withLock { $0.count } == expected && pool.idleCount == 1 })
    }
    #expect(onEngine.withLock { $0 } == [true, true])
    #expect(pool.tasksStarted == 1, "the second job ran on the first job's task")
  }
}

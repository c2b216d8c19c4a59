/// Runs jobs on long-lived tasks that prefer one executor, instead of a new task per job.
///
/// A task allocates its async frames from its own task-allocator slabs: about 1 KiB each,
/// `malloc`ed as the frames grow and kept until the task ends. A cold resolution's frames
/// (listener, resolver, iteration, the RFC 9539 policy, the transport) needed about 14 slabs, and
/// one more for the executor preference record, all freed again when its task ended. A pooled task
/// keeps its slabs from one job to the next, so once warm a job allocates none of them.
///
/// After its job, a task waits for the next one; at most `maxIdle` tasks wait, the rest end.
/// A waiting task keeps slabs for the deepest job it ran (a cold encrypted resolution: about
/// 20 KiB), so the listeners' pool holds at most 128 times that.
///
/// A pooled task keeps the priority and task-local values of the context that started it for all
/// its jobs: call `run` from outside any task (the engine loop, a NIO event loop), as the
/// listeners do.
final class TaskPool: Sendable {
  /// One job. It runs on the pooled task's executor, with no hop to the generic executor and back.
  struct Job: Sendable {
    let body: nonisolated(nonsending) @Sendable () async -> Void
  }

  private struct State {
    /// Tasks waiting for a job, most recently parked last (its slabs are the warmest).
    var idle: [UnsafeContinuation<Job?, Never>] = []
    /// Tasks started since the pool was made (for tests and diagnostics).
    var started = 0
    /// Set by `close`: no task waits any more.
    var closed = false
  }

  private let state = StateLock(State())
  private let executor: (any TaskExecutor)?
  /// The most tasks kept waiting for work.
  let maxIdle: Int

  /// A pool whose tasks prefer `executor` (nil: no preference) and keep at most `maxIdle` waiting.
  init(executor: (any TaskExecutor)?, maxIdle: Int) {
    self.executor = executor
    self.maxIdle = max(0, maxIdle)
  }

  /// Tasks started so far; a job that found a waiting task started none.
  var tasksStarted: Int { state.withLock { $0.started } }

  /// Tasks waiting for a job now.
  var idleCount: Int { state.withLock { $0.idle.count } }

  /// Ends the waiting tasks; from now on every task ends after its job. A waiting task holds the
  /// pool, so a pool that is not closed lives as long as its waiting tasks (the listeners' pool
  /// lives as long as the process).
  func close() {
    let waiting = state.withLock { s in
      s.closed = true
      defer { s.idle = [] }
      return s.idle
    }
    for task in waiting { task.resume(returning: nil) }
  }

  /// Runs `job` on a waiting task, or on a new one when none waits.
  func run(_ body: nonisolated(nonsending) @escaping @Sendable () async -> Void) {
    let job = Job(body: body)
    let waiting = state.withLock { s -> UnsafeContinuation<Job?, Never>? in
      if let worker = s.idle.popLast() { return worker }
      s.started += 1
      return nil
    }
    if let waiting {
      waiting.resume(returning: job)
      return
    }
    // The task's closure lives as long as the task: it gets the first job through a box it
    // empties, not as a capture, so that job's captures are not kept while the task waits.
    let first = FirstJob(job)
    Task(executorPreference: executor) { [self] in
      var next: Job? = first.take()
      while next != nil {
        // Called through a temporary (no frame of its own, no hop back from one); the job is
        // dropped before waiting, so a waiting task does not keep its captures alive.
        await next?.body()
        next = nil
        next = await nextJob()
      }
    }
  }

  /// The next job, or nil when enough tasks wait already (this one then ends).
  private nonisolated(nonsending) func nextJob() async -> Job? {
    await withUnsafeContinuation { continuation in
      let parked = state.withLock { s in
        guard !s.closed, s.idle.count < maxIdle else { return false }
        s.idle.append(continuation)
        return true
      }
      if !parked { continuation.resume(returning: nil) }
    }
  }
}

/// Hands a new pooled task its first job once.
private final class FirstJob: @unchecked Sendable {
  // Written before the task starts and taken once by that task only.
  private var job: TaskPool.Job?
  init(_ job: TaskPool.Job) { self.job = job }
  func take() -> TaskPool.Job? {
    defer { job = nil }
    return job
  }
}

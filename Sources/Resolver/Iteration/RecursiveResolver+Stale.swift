import Synchronization

/// Serve-stale (RFC 8767): when and how expired data still kept in the cache answers a client.
extension RecursiveResolver {
  /// `refresh`, except where RFC 8767 answers stale first: a question whose refresh failed within
  /// the recheck interval or whose refresh is still running gets the stale answer at once,
  /// and one with stale data in the cache gets it after the client response timer if the refresh
  /// has not finished by then (the refresh goes on and updates the cache). With
  /// `maxBackgroundRefreshes` refreshes going on, stale data is answered at once, unrefreshed.
  nonisolated(nonsending) func resolveServingStale(_ question: Question, key: Question) async -> Resolution {
    // Only a question with expired data kept can be answered stale. The look that tells is the
    // resolution's own first look at the cache (one lock for both), handed on to it. (A chain
    // whose first link is live falls back to stale data only when its refresh fails, in `refresh`.)
    let look = core.cache.look(question.name, question.type, checkingStale: true)
    guard look.holdsStale else { return await refresh(question, key: key, looked: look) }
    let startedAt = SystemTimeSource().now()
    let limit = core.configuration.maxBackgroundRefreshes
    let (inFlight, full) = core.refreshing.withLock { ($0.contains(key), $0.count >= limit) }
    let why: String? =
      core.staleRecheck.contains(key)
      ? "the last refresh failed less than \(Int(core.staleRecheck.ttl)) s ago (RFC 8767 failure recheck)"
      : inFlight
        ? "refresh under way (RFC 8767 client response timer)"
        : full ? "\(limit) refreshes already under way; not refreshed now" : nil
    if let why {
      guard var stale = await staleResolution(question) else {
        // The stale data went meanwhile (evicted, or a live link ahead of it): a plain refresh,
        // neither racing nor marked in `refreshing` (one for this question may be running).
        return await refresh(question, key: key)
      }
      stale.failureReason = why
      stale.elapsedMs = (SystemTimeSource().now() - startedAt) * 1000
      return stale
    }
    let timer = core.configuration.staleAnswerAfter
    guard timer > 0 else { return await refresh(question, key: key) }
    return await refreshOrStale(after: timer, question, key: key, startedAt: startedAt)
  }

  /// The answer from the cache alone, expired entries still kept included, or nil when it
  /// has none; marked stale and counted as served from the cache.
  nonisolated(nonsending) func staleResolution(_ question: Question) async -> Resolution? {
    let run = ResolutionRun(core: core)
    run.staleOnly = true
    let outcome = await run.resolve(question, depth: 0)
    if case .failure = outcome { return nil }
    var r = Self.resolution(outcome)
    r.stale = true
    r.fromCache = true
    return r
  }

  /// R-43's client response timer: the refresh runs in a task of its own; whichever comes first,
  /// its result or the stale answer `seconds` after the start, is the client's answer. A refresh
  /// that ends after the stale answer reports its hops to `backgroundHops`.
  nonisolated(nonsending) func refreshOrStale(
    after seconds: Double, _ question: Question, key: Question, startedAt: Double
  ) async -> Resolution {
    core.refreshing.withLock { _ = $0.insert(key) }
    let first = FirstAnswer()
    // Both run on the resolver's own thread, the timer as one of the engine's timers: a timer on
    // the global pool could be held up by whatever else the process runs there, and answer after
    // the refresh it should beat.
    let executor = UDPExchangeEngine.shared.taskExecutor
    return await withUnsafeContinuation { continuation in
      first.arm(continuation)
      let answerStale: @Sendable () async -> Void = { [self] in
        guard !first.isAnswered, var stale = await staleResolution(question) else { return }
        stale.failureReason = "refresh still running after \(seconds) s (RFC 8767 client response timer)"
        stale.elapsedMs = (SystemTimeSource().now() - startedAt) * 1000
        // Counted before the answer goes, uncounted if the refresh's went first: the refresh
        // uncounts it when it ends unanswered, so the count never stays off.
        core.backgroundRefreshes.add(1, ordering: .relaxed)
        if !first.answer(stale) { core.backgroundRefreshes.subtract(1, ordering: .relaxed) }
      }
      // A late timer (its cancel raced its setting) finds the question answered and does nothing.
      let stopTimer = OneShotTimer.start(after: seconds) {
        Task(executorPreference: executor) { await answerStale() }
      }
      Task(executorPreference: executor) { [self] in
        let fresh = await refresh(question, key: key)
        core.refreshing.withLock { _ = $0.remove(key) }
        stopTimer()
        guard !first.answer(fresh) else { return }
        // Its client already has the stale answer, which carries no hops: the refresh's queries
        // reach the Privacy counts here, as a probe's do.
        core.backgroundHops.report(fresh.hops)
        core.backgroundRefreshes.subtract(1, ordering: .relaxed)
      }
    }
  }
}

/// The first of several answers to one waiting caller; later ones are dropped.
final class FirstAnswer: Sendable {
  private let state = Mutex<(continuation: UnsafeContinuation<Resolution, Never>?, answered: Bool)>((nil, false))

  /// Whether an answer went out.
  var isAnswered: Bool { state.withLock { $0.answered } }

  /// Sets the caller to resume; called before anything can answer.
  func arm(_ continuation: UnsafeContinuation<Resolution, Never>) {
    state.withLock { $0.continuation = continuation }
  }

  /// Resumes the caller with `resolution` unless an answer went out already; whether it did.
  @discardableResult
  func answer(_ resolution: Resolution) -> Bool {
    let waiting = state.withLock { s -> UnsafeContinuation<Resolution, Never>? in
      guard !s.answered, let c = s.continuation else { return nil }
      s.answered = true
      s.continuation = nil
      return c
    }
    guard let waiting else { return false }
    waiting.resume(returning: resolution)
    return true
  }
}

import Testing

@testable import Resolver

/// When the engine counts as loaded (its sends wait for the turn's other jobs) and when idle.
@Suite struct EngineLoadTests {
  let ms: UInt64 = 1_000_000

  @Test func aFreshEngineCountsAsLoaded() {
    // No idle spell yet: a start under load batches from the first turn.
    #expect(EngineLoad().isLoaded(now: 5 * ms))
  }

  @Test func aLongSleepMakesTheNextMillisecondIdle() {
    var load = EngineLoad()
    load.woke(sleptFrom: 100 * ms, now: 110 * ms)  // slept 10 ms, as between bursts of replies
    #expect(!load.isLoaded(now: 110 * ms), "the turn after a 10 ms sleep held its sends")
    #expect(!load.isLoaded(now: 110 * ms + EngineLoad.window - 1))
    #expect(load.isLoaded(now: 110 * ms + EngineLoad.window), "awake a full window, yet still sending at once")
  }

  @Test func shortSleepsAndNoSleepKeepTheEngineLoaded() {
    var load = EngineLoad()
    load.woke(sleptFrom: 100 * ms, now: 110 * ms)
    // Busy from then on: turns without sleep (sleptFrom 0) and sleeps shorter than the gap.
    load.woke(sleptFrom: 0, now: 110 * ms + 300_000)
    load.woke(sleptFrom: 110 * ms + 400_000, now: 110 * ms + 400_000 + EngineLoad.idleGap - 1)
    #expect(load.isLoaded(now: 112 * ms), "a sleep shorter than idleGap counted as idle")
    // A sleep of exactly the gap starts a new idle window.
    load.woke(sleptFrom: 120 * ms, now: 120 * ms + EngineLoad.idleGap)
    #expect(!load.isLoaded(now: 120 * ms + EngineLoad.idleGap + 1))
  }
}

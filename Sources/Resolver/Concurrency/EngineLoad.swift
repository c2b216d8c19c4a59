/// Whether the engine thread counts as loaded: awake, without a sleep of `idleGap` or longer, for
/// at least `window`. A loaded engine holds the sends its jobs make until the turn's other jobs
/// have run, so they leave together and wake their receivers once; an engine that was idle a
/// moment ago sends each at once, since nothing queues behind it and holding a send only delays
/// it. With authoritative servers 10 ms away, replies reach an idle engine in bursts, and holding
/// the first answer of a burst for the others cost about 0.25 ms a resolution at 20 outstanding
/// (`make bench`'s rtt benchmark); under load on loopback, batching took the cold p50 from
/// 0.64–0.70 to 0.54–0.58 ms (HISTORY.md, 2026-12-05 03:37).
struct EngineLoad: Sendable {
  /// A sleep at least this long (nanoseconds) means the engine was idle.
  static let idleGap: UInt64 = 500_000
  /// How long (nanoseconds) the engine must be awake after an idle spell to count as loaded.
  static let window: UInt64 = 1_000_000

  /// When the engine last woke from an idle spell (monotonic nanoseconds; 0: never, which counts
  /// as loaded: a busy start batches).
  private(set) var lastIdleWake: UInt64 = 0

  /// Notes a wake-up at `now` from a sleep that began at `sleptFrom` (0: the engine did not sleep).
  mutating func woke(sleptFrom: UInt64, now: UInt64) {
    if sleptFrom != 0, now &- sleptFrom >= Self.idleGap { lastIdleWake = now }
  }

  /// True when the engine has been awake for `window` or more since its last idle spell.
  func isLoaded(now: UInt64) -> Bool { lastIdleWake == 0 || now &- lastIdleWake >= Self.window }
}

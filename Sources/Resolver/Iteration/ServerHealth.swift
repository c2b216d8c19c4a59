/// What the resolver knows of one authoritative server address: its smoothed RTT and
/// whether it is held as unresponsive. RFC 9520 §3.2 lets a resolver cache an unresponsive
/// server by its address; R-24 asks for such failures to be kept ≥ 1 s, backing off while they
/// persist, with nothing sent for them meanwhile. Times are `TimeSource` seconds.
struct ServerHealth {
  /// Smoothed RTT in milliseconds; nil until measured or timed out.
  var srtt: Double?
  /// Every timeout recorded (monitoring).
  var timeouts = 0
  /// Timeouts of queries sent after the server's last reply, in a row.
  var silentStreak = 0
  /// When the first query of the current silent streak was sent.
  var streakStart = 0.0
  /// When the server last replied; -∞ if never.
  var lastReply = -Double.infinity
  /// Set while the server is held as unresponsive.
  var hold: Hold?

  /// A server held as unresponsive: resolutions that start after `since` do not send to it,
  /// except one probe at `nextProbe`, with the gap between probes doubling.
  struct Hold: Equatable {
    var since: Double
    var nextProbe: Double
    var interval: Double
  }

  /// Silent timeouts in a row that start a hold, and how long the server must have been silent.
  struct Rule: Sendable {
    /// Timeouts of queries sent after the last reply, in a row; 0: never hold.
    var timeouts = 3
    /// Seconds from the first of them to the last: a lossy but live server under load replies
    /// in between, a dead one does not.
    var minSilence = 2.0
    /// First gap between probes of a held server, seconds (R-24's 1 s minimum).
    var firstProbeGap = 1.0
    /// Largest gap between probes, seconds (R-43's failure recheck, 30 s by default).
    var maxProbeGap = 30.0
  }

  /// Notes a reply that took `rttMs`: srtt = 0.7·srtt + 0.3·sample. True when a hold ended.
  mutating func measured(rttMs: Double, at now: Double) -> Bool {
    srtt = srtt.map { 0.7 * $0 + 0.3 * rttMs } ?? rttMs
    return reply(at: now)
  }

  /// Notes a reply: the streak ends and so does a hold. True when a hold ended.
  mutating func reply(at now: Double) -> Bool {
    silentStreak = 0
    lastReply = max(lastReply, now)
    guard hold != nil else { return false }
    hold = nil
    return true
  }

  /// Notes a timeout of a query sent at `sentAt`: the srtt doubles, capped at 10 s. A
  /// query sent before the last reply says nothing about whether the server is alive now. True
  /// when this starts a hold.
  mutating func timeout(sentAt: Double, at now: Double, rule: Rule) -> Bool {
    srtt = min(10_000, max(srtt ?? 200, 100) * 2)
    timeouts += 1
    guard sentAt >= lastReply else { return false }
    if silentStreak == 0 { streakStart = sentAt }
    silentStreak += 1
    guard hold == nil, rule.timeouts > 0, silentStreak >= rule.timeouts, now - streakStart >= rule.minSilence else {
      return false
    }
    hold = Hold(since: now, nextProbe: now + rule.firstProbeGap, interval: rule.firstProbeGap)
    return true
  }

  /// Whether a resolution that started at `runStarted` may send to this server at `now`. One
  /// that started before the hold goes on as it was; a later one only as the next probe, which
  /// moves the probe after it on by the doubled gap.
  mutating func admits(runStarted: Double, at now: Double, rule: Rule) -> Bool {
    guard var h = hold, runStarted >= h.since else { return true }
    guard now >= h.nextProbe else { return false }
    h.interval = min(h.interval * 2, max(rule.maxProbeGap, rule.firstProbeGap))
    h.nextProbe = now + h.interval
    hold = h
    return true
  }
}

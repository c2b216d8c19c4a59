/// What the resolver knows of one authoritative server address: its smoothed RTT and
/// whether it is held as unresponsive. RFC 9520 §3.2 lets a resolver cache an unresponsive
/// server by its address; R-24 asks for such failures to be kept ≥ 1 s, backing off while they
/// persist, with nothing sent for them meanwhile. Silence is judged per kind of query (A, AAAA,
/// HTTPS and SVCB, other types), as Unbound's infrastructure cache does per type: a server that
/// drops one type only (RFC 8906 §3.1.4; HTTPS queries, which browsers send beside every A and
/// AAAA, are the usual case) is held for that kind, not for the zone's other names and types.
/// Times are `TimeSource` seconds.
struct ServerHealth {
  /// Smoothed RTT of the replies measured, in milliseconds; nil until one is.
  private var measuredRTT: Double?
  /// Timeouts since the last measured reply: each doubles the srtt the resolver goes by.
  private var backoff = 0
  /// What the srtt is scaled by to decide on a re-test: 0.98 for every second in which the
  /// server was left unasked, for being slower, while its zone's chosen server answered (BIND's
  /// aging); 1 again on any news of it and when a re-test is taken.
  private var ageFactor = 1.0
  private var lastAged = -Double.infinity
  private var lastRetest = -Double.infinity
  /// Every timeout recorded (monitoring).
  var timeouts = 0
  private var a = Silence()
  private var aaaa = Silence()
  private var svcb = Silence()
  private var other = Silence()

  /// The kind of query silence is judged by.
  enum Kind: Sendable {
    case a, aaaa, svcb, other

    init(_ type: RRType) {
      switch type {
      case .a: self = .a
      case .aaaa: self = .aaaa
      case .https, .svcb: self = .svcb
      default: self = .other
      }
    }
  }

  /// One kind of query's silent streak and hold.
  struct Silence {
    /// Timeouts of queries sent after the server's last reply of this kind, in a row.
    var streak = 0
    /// When the first query of the current streak was sent.
    var streakStart = 0.0
    /// When the server last replied to this kind; -∞ if never.
    var lastReply = -Double.infinity
    /// Set while the server is held as unresponsive to this kind.
    var hold: Hold?
  }

  /// A server held as unresponsive: resolutions that start after `since` do not send it this
  /// kind of query, except one probe once `nextProbe` has come, with the gap between probes
  /// doubling.
  struct Hold: Equatable {
    var since: Double
    var nextProbe: Double
    var interval: Double
  }

  /// Silent timeouts in a row that start a hold, and how long the server must have been silent.
  struct Rule: Sendable {
    /// Timeouts of queries sent after the last reply, in a row; 0: never hold.
    var timeouts = 3
    /// Seconds from the first of them being sent to the last timing out: a lossy but live server
    /// under load replies in between, a dead one does not.
    var minSilence = 2.0
    /// First gap between probes of a held server, seconds (R-24's 1 s minimum).
    var firstProbeGap = 1.0
    /// Largest gap between probes, seconds (R-43's failure recheck, 30 s by default).
    var maxProbeGap = 30.0
  }

  /// How a resolution that started at some time may use this server for one kind of query now.
  enum Admission: Equatable {
    /// Not held, or held after the resolution started: send as usual.
    case free
    /// Held, and its next probe has come: send one probe if `claimProbe` still gives it (beside
    /// the resolution while the zone has free servers, else in its place).
    case probeDue
    /// Held: leave it out.
    case held
  }

  /// `kind`'s silent streak and hold.
  subscript(kind: Kind) -> Silence {
    switch kind {
    case .a: a
    case .aaaa: aaaa
    case .svcb: svcb
    case .other: other
    }
  }

  /// Runs `body` on `kind`'s silence in place (no copy out and back).
  private mutating func withSilence<R>(_ kind: Kind, _ body: (inout Silence) -> R) -> R {
    switch kind {
    case .a: body(&a)
    case .aaaa: body(&aaaa)
    case .svcb: body(&svcb)
    case .other: body(&other)
    }
  }

  /// The earliest next probe of the kinds held; nil when none is.
  var nextProbe: Double? { [a.hold, aaaa.hold, svcb.hold, other.hold].compactMap { $0?.nextProbe }.min() }

  /// The srtt in milliseconds the resolver orders servers and sets timeouts by: the
  /// replies' smoothed RTT, doubled by every timeout since the last of them (200 ms before any),
  /// capped at 10 s; nil for a server neither measured nor timed out.
  var srtt: Double? {
    guard backoff > 0 else { return measuredRTT }
    return min(10_000, max(measuredRTT ?? 200, 100) * Double(1 << backoff))
  }

  /// Notes that the zone's chosen server answered and this slower one was not asked: its aged
  /// srtt shrinks by 2%, at most once a second (so a burst of queries ages it no faster than a
  /// trickle of one a second).
  mutating func leftUnasked(at now: Double) {
    guard now - lastAged >= 1 else { return }
    lastAged = now
    ageFactor *= 0.98
  }

  /// Ends the aging without a re-test (while a re-test would go in cleartext beside encryption).
  mutating func stopAging() { ageFactor = 1 }

  /// Takes a re-test of this server when its srtt is out of reach of `best` (more than
  /// 100 ms slower) but its aged srtt is not, at most once per `minGap` seconds: a slower server,
  /// or one backed off by its timeouts, is asked again now and then to learn whether it got
  /// faster. Starts its aging over.
  mutating func takeRetest(best: Double, at now: Double, minGap: Double) -> Bool {
    guard let srtt, srtt > best + 100, srtt * ageFactor <= best + 100, now - lastRetest >= minGap else { return false }
    ageFactor = 1
    lastRetest = now
    return true
  }

  /// Notes a reply of `kind` that took `rttMs`: smoothed RTT = 0.7·old + 0.3·sample, and
  /// the timeouts' backoff ends (RFC 6298 §5's rule: a new sample, not the backed-off value, sets
  /// the next timeout), so a lossy but fast server is not waited on for seconds after one
  /// reply. True when a hold ended.
  mutating func measured(rttMs: Double, at now: Double, kind: Kind) -> Bool {
    measuredRTT = measuredRTT.map { 0.7 * $0 + 0.3 * rttMs } ?? rttMs
    backoff = 0
    return reply(at: now, kind: kind)
  }

  /// Notes a reply of `kind`: its streak ends and so does its hold. True when a hold ended.
  mutating func reply(at now: Double, kind: Kind) -> Bool {
    ageFactor = 1
    return withSilence(kind) { s in
      s.streak = 0
      s.lastReply = max(s.lastReply, now)
      guard s.hold != nil else { return false }
      s.hold = nil
      return true
    }
  }

  /// A reply that was no answer (REFUSED, SERVFAIL, a lame or upward referral) or a port the
  /// server does not listen on (ECONNREFUSED): its srtt doubles as for a timeout, without a
  /// measured round trip to undo it, so a fast but useless server is not asked first (as BIND's
  /// and Unbound's lame marks do). Not silence: it holds nothing.
  mutating func penalise() {
    backoff = min(backoff + 1, 8)
    ageFactor = 1
  }

  /// Notes a timeout of a `kind` query sent at `sentAt`: the srtt doubles, capped at 10 s.
  /// A query sent before the last reply says nothing about whether the server is alive now, nor
  /// does one that `silence` says is not the server's (an encrypted transport's timeout). True
  /// when this starts a hold.
  mutating func timeout(sentAt: Double, at now: Double, rule: Rule, kind: Kind, silence: Bool = true) -> Bool {
    backoff = min(backoff + 1, 8)  // 100 ms · 2⁸ is past the 10 s cap
    ageFactor = 1
    timeouts += 1
    guard silence else { return false }
    return withSilence(kind) { s in
      guard sentAt >= s.lastReply else { return false }
      if s.streak == 0 { s.streakStart = sentAt }
      s.streak += 1
      let starts =
        s.hold == nil && rule.timeouts > 0 && s.streak >= rule.timeouts && now - s.streakStart >= rule.minSilence
      if starts { s.hold = Hold(since: now, nextProbe: now + rule.firstProbeGap, interval: rule.firstProbeGap) }
      return starts
    }
  }

  /// How a resolution that started at `runStarted` may use this server for `kind` at `now`. One
  /// that started before the hold goes on as it was.
  func admission(runStarted: Double, at now: Double, kind: Kind) -> Admission {
    guard let h = self[kind].hold, runStarted >= h.since else { return .free }
    return now >= h.nextProbe ? .probeDue : .held
  }

  /// What `claimProbe` found.
  enum ProbeClaim: Equatable {
    /// The probe is this caller's to send.
    case taken
    /// Not due: another resolution took it.
    case notDue
    /// The kind is not held (a reply ended the hold): ask the server as any other.
    case notHeld
  }

  /// Takes the probe of `kind` due at `now`, moving the next one on by the doubled gap, and at
  /// least by `busy`, the seconds the probe may take (so probes do not overlap).
  mutating func claimProbe(at now: Double, rule: Rule, kind: Kind, busy: Double = 0) -> ProbeClaim {
    withSilence(kind) { s in
      guard var h = s.hold else { return .notHeld }
      guard now >= h.nextProbe else { return .notDue }
      h.interval = min(h.interval * 2, max(rule.maxProbeGap, rule.firstProbeGap))
      h.nextProbe = now + max(h.interval, busy)
      s.hold = h
      return .taken
    }
  }
}

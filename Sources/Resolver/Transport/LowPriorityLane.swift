/// The engine thread's low-priority work: the handshakes of probe connections no query waits for
/// (OE-10: probing never slows a resolution). A handshake step costs the thread a few hundred
/// microseconds of crypto at once (key shares, the certificate chain); a fresh process probes
/// every server it meets, and a burst of such steps held the answers of its first resolutions
/// 6–12 ms. Low-priority work runs one piece per engine turn, and only in a turn with nothing
/// else to do, or once it has waited `patience` (so a busy engine still finishes its handshakes).
/// Engine thread only.
struct LowPriorityLane {
  /// How long low-priority work waits at most while the engine has other work, in nanoseconds.
  /// With 2 ms a fresh process under load (20 outstanding, the engine busy in most turns)
  /// finished its probes so late that its encrypted share of a 3,000-name run fell from about
  /// 0.77 to 0.58-0.71; with 0.5 ms it was 0.70-0.72, and no handshake step runs back to back
  /// with another while answers wait.
  static let patience: UInt64 = 500_000

  /// A low-priority stream's epoll events of this turn, not handled yet. `id` tells the stream
  /// from a later one on the same descriptor.
  struct Deferred {
    let fd: Int32
    let events: UInt32
    let id: UInt64
  }

  /// The low-priority streams epoll reported this turn (cleared by `take`).
  private(set) var deferred: [Deferred] = []
  /// Since when low-priority work has been waiting behind other work (0: not waiting).
  private(set) var waitingSince: UInt64 = 0

  init() { deferred.reserveCapacity(16) }

  /// Notes a low-priority stream's events for the end of the turn.
  mutating func note(fd: Int32, events: UInt32, id: UInt64) {
    deferred.append(Deferred(fd: fd, events: events, id: id))
  }

  /// Whether one piece of low-priority work runs now: at once when the engine has nothing else
  /// to do (`busy` false), else once the work has waited `patience` since it was first passed over.
  mutating func mayRun(busy: Bool, now: UInt64) -> Bool {
    if !busy {
      waitingSince = 0
      return true
    }
    if waitingSince == 0 {
      waitingSince = now
      return false
    }
    guard now &- waitingSince >= Self.patience else { return false }
    waitingSince = 0
    return true
  }

  /// Forgets that work waited (there is none left).
  mutating func idle() { waitingSince = 0 }

  /// The first stream noted this turn, if any, and forgets the others: epoll is level-triggered,
  /// so their events come back next turn (after the ones just handled: the kernel requeues a
  /// reported level-triggered descriptor at the end of its ready list, so streams take turns).
  mutating func take() -> Deferred? {
    let first = deferred.first
    deferred.removeAll(keepingCapacity: true)
    return first
  }
}

/// A server's `TransportState` per encrypted transport, one fixed slot each (OE-5). Read on every
/// query to the server: a dictionary here hashed its key on each of about eight reads per exchange.
/// The slots live in one shared, copy-on-write box, so copying a server's record copies no state.
public struct TransportSlots: Sendable, Hashable, Sequence {
  // Copy-on-write: mutated only while uniquely referenced, through its owner, which the encryption
  // table's lock serializes; hence no run-time exclusivity checks on its fields. A state is kept
  // unwrapped beside a flag, not as an optional: `update` then changes it in place, where going
  // through the optional copied the whole state out and back (about 800 instructions per query).
  private final class Box: @unchecked Sendable {
    @exclusivity(unchecked) var dot = TransportState()
    @exclusivity(unchecked) var doq = TransportState()
    @exclusivity(unchecked) var hasDoT = false
    @exclusivity(unchecked) var hasDoQ = false
    init(dot: TransportState?, doq: TransportState?) {
      if let dot { (self.dot, hasDoT) = (dot, true) }
      if let doq { (self.doq, hasDoQ) = (doq, true) }
    }
    var dotState: TransportState? { hasDoT ? dot : nil }
    var doqState: TransportState? { hasDoQ ? doq : nil }
  }
  private var box: Box?

  public init() {}

  /// The state of `t`, nil when that transport was never touched.
  public subscript(_ t: EncryptedTransport) -> TransportState? {
    get {
      guard let box else { return nil }
      switch t {
      case .dot: return box.dotState
      case .doq: return box.doqState
      }
    }
    set {
      let box = uniqueBox()
      switch t {
      case .dot: (box.dot, box.hasDoT) = (newValue ?? TransportState(), newValue != nil)
      case .doq: (box.doq, box.hasDoQ) = (newValue ?? TransportState(), newValue != nil)
      }
    }
  }

  /// Runs `body` on `t`'s state in place, creating it first when absent. The one way to change a
  /// state in place: a `_modify` subscript tried first malloc'ed its coroutine frame per update.
  public mutating func update<R>(_ t: EncryptedTransport, _ body: (inout TransportState) -> R) -> R {
    let box = uniqueBox()
    switch t {
    case .dot:
      box.hasDoT = true
      return body(&box.dot)
    case .doq:
      box.hasDoQ = true
      return body(&box.doq)
    }
  }

  /// True when `t`'s state exists and `test` holds for it (read in place, as `read` does).
  public func contains(_ t: EncryptedTransport, where test: (borrowing TransportState) -> Bool) -> Bool {
    guard let box else { return false }
    switch t {
    case .dot: return box.hasDoT && Self.lend(&box.dot, test)
    case .doq: return box.hasDoQ && Self.lend(&box.doq, test)
    }
  }

  /// `body` applied to `t`'s state, or to a never-touched one (OE-9) when absent, without
  /// copying the state out of its box: passed by value, a state read from the box was copied
  /// (its arrays, dictionary and strings retained and released, about 200 instructions), so it
  /// is passed by address. `body` only reads it: the box may be shared.
  public func read<R>(_ t: EncryptedTransport, _ body: (borrowing TransportState) -> R) -> R {
    switch t {
    case .dot: if let box, box.hasDoT { return Self.lend(&box.dot, body) }
    case .doq: if let box, box.hasDoQ { return Self.lend(&box.doq, body) }
    }
    return body(TransportState())
  }

  /// Lends the state at its address to a reader (`read`).
  @inline(__always)
  private static func lend<R>(_ state: inout TransportState, _ body: (borrowing TransportState) -> R) -> R {
    body(state)
  }

  /// `resumed` and `earlyDataAccepted` of `t`, for an exchange's trace.
  public func sessionFlags(_ t: EncryptedTransport) -> (resumed: Bool, earlyData: Bool?) {
    guard let box else { return (false, nil) }
    switch t {
    case .dot: return box.hasDoT ? (box.dot.resumed, box.dot.earlyDataAccepted) : (false, nil)
    case .doq: return box.hasDoQ ? (box.doq.resumed, box.doq.earlyDataAccepted) : (false, nil)
    }
  }

  /// How many present states pass `test` (no array built: the probe cap counts over every server).
  public func count(where test: (TransportState) -> Bool) -> Int {
    (contains(.dot, where: test) ? 1 : 0) + (contains(.doq, where: test) ? 1 : 0)
  }

  /// The states present, DoT first.
  public var values: [TransportState] { [self[.dot], self[.doq]].compactMap { $0 } }

  /// (transport, state) for each transport present, DoT first.
  public func makeIterator() -> IndexingIterator<[(key: EncryptedTransport, value: TransportState)]> {
    var out: [(key: EncryptedTransport, value: TransportState)] = []
    if let dot = self[.dot] { out.append((.dot, dot)) }
    if let doq = self[.doq] { out.append((.doq, doq)) }
    return out.makeIterator()
  }

  public static func == (a: TransportSlots, b: TransportSlots) -> Bool {
    a.box === b.box || (a[.dot] == b[.dot] && a[.doq] == b[.doq])
  }

  public func hash(into h: inout Hasher) {
    h.combine(self[.dot])
    h.combine(self[.doq])
  }

  private mutating func uniqueBox() -> Box {
    if isKnownUniquelyReferenced(&box), let box { return box }
    let fresh = Box(dot: box?.dotState, doq: box?.doqState)
    box = fresh
    return fresh
  }
}

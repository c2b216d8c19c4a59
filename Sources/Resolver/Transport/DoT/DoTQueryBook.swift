/// The DNS side of one DoT session without I/O: the queries outstanding on the connection under
/// IDs unique among them, their deadlines, and what each reply means (T-12, T-13, T-19, T-20, T-40).
/// `Completion` is whatever the session resumes when a query ends (a continuation; tests use plain values).
struct DoTQueryBook<Completion> {
  private struct Entry {
    var matcher: ResponseMatcher
    var originalID: UInt16
    /// Monotonic nanoseconds.
    var deadline: UInt64
    var completion: Completion
  }

  /// What one framed reply did.
  enum Receipt {
    /// It answered a query: complete it with the result (the caller's ID restored on success).
    case answered(Completion, Result<Message, TransportError>)
    /// Unknown ID or another question: dropped (T-13), counted as mismatched.
    case unmatched
    /// Too short to carry an ID: dropped, counted as malformed.
    case short
  }

  private var entries: [UInt16: Entry] = [:]

  /// True when no query is outstanding.
  var isEmpty: Bool { entries.isEmpty }

  /// How many queries are outstanding.
  var count: Int { entries.count }

  /// Registers `query` under a random ID unused among the outstanding ones and returns the padded
  /// wire form with its 2-octet length prefix and the keepalive request (T-11, T-20, T-40), or nil
  /// when every ID is in use.
  mutating func add(_ query: Message, deadline: UInt64, completion: Completion) -> [UInt8]? {
    guard entries.count < Int(UInt16.max) else { return nil }
    var random = PooledRandom()
    var id = UInt16.random(in: .min ... .max, using: &random)
    while entries[id] != nil { id = UInt16.random(in: .min ... .max, using: &random) }
    entries[id] = Entry(
      matcher: ResponseMatcher(query: query, id: id), originalID: query.header.id, deadline: deadline,
      completion: completion)
    // T-20: every query asks for a long-lived connection (the server's TIMEOUT comes back in the reply).
    return DoTQueryPadding.framedPaddedWire(query, id: id, requestingKeepalive: true)
  }

  /// Matches one reply (without its length prefix) by ID and question, in any order.
  mutating func receive(_ bytes: [UInt8]) -> Receipt {
    guard bytes.count >= 2 else { return .short }
    let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
    guard let entry = entries[id], let result = entry.matcher.match(bytes) else { return .unmatched }
    entries[id] = nil
    switch result {
    case .failure(let error): return .answered(entry.completion, .failure(.malformed(error)))
    case .success(var response):
      if response.header.tc { return .answered(entry.completion, .failure(.truncated)) }  // T-19
      response.header.id = entry.originalID
      return .answered(entry.completion, .success(response))
    }
  }

  /// Removes and returns the queries whose deadline is at or before `now`.
  mutating func expire(now: UInt64) -> [Completion] {
    var out: [Completion] = []
    for (id, entry) in entries where entry.deadline <= now {
      out.append(entry.completion)
      entries[id] = nil
    }
    return out
  }

  /// The earliest deadline outstanding.
  /// (A closure, not `\.deadline`: a key path is applied through the runtime, swift_getAtKeyPath.)
  var nextDeadline: UInt64? { entries.values.lazy.map({ $0.deadline }).min() }

  /// Removes and returns every outstanding query (the session ended).
  mutating func removeAll() -> [Completion] {
    let out = entries.values.map(\.completion)
    entries = [:]
    return out
  }
}

extension EncryptedFailure {
  /// How a DoT session that completed its handshake ended (RFC 9539 §6 gap 5): a TLS failure as
  /// itself; otherwise clean if we closed it or nothing was outstanding, else a reset.
  static func dotSessionEnd(failure: EncryptedFailure?, closedLocally: Bool, outstanding: Bool) -> EncryptedFailure {
    switch failure {
    case .tlsAlert?, .tlsError?, .alpnMismatch?: return failure ?? .cleanClose
    default: return closedLocally || !outstanding ? .cleanClose : .resetWithQueriesOutstanding
    }
  }
}

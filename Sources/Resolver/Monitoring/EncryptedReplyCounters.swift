/// Bad replies seen on encrypted sessions (issue 8), the DoT and DoQ counterparts of Do53's
/// `malformedReplies` and `mismatchedReplies`, and the extra DoT connections opened; shown in
/// `sotto ctl stats` under `upstream`.
public final class EncryptedReplyCounters: Sendable {
  /// DoT responses that could not be parsed (bad compression pointers, cut messages, ...).
  let dotMalformed = Counter()
  /// DoT responses with an ID no query on the connection has, or with another question (T-13).
  let dotMismatched = Counter()
  /// DoQ responses that broke RFC 9250 §4.2: unparsable, wrong length prefix, non-zero ID, other
  /// question, over 65,535 octets.
  let doqMalformed = Counter()
  /// DoQ query streams the server reset (RESET_STREAM) instead of answering (OE-37: a failed query).
  let doqResets = Counter()
  /// Extra DoT connections opened beside a session's first while queries overlapped (`DoTLanes`).
  let dotLanes = Counter()

  public init() {}

  /// Malformed DoT responses so far.
  public var malformedDoT: Int { dotMalformed.value }
  /// Mismatched (dropped) DoT responses so far.
  public var mismatchedDoT: Int { dotMismatched.value }
  /// Malformed DoQ responses so far.
  public var malformedDoQ: Int { doqMalformed.value }
  /// DoQ query streams reset by servers so far.
  public var resetDoQStreams: Int { doqResets.value }
  /// Extra DoT connections opened so far.
  public var extraDoTConnections: Int { dotLanes.value }
}

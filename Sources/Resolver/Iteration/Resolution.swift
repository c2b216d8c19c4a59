/// How a query travelled to an authoritative server.
public enum TransportKind: String, Sendable, Codable, CaseIterable {
  case do53UDP = "Do53/UDP"
  case do53TCP = "Do53/TCP"
  case dot = "DoT"
  case doq = "DoQ"
  /// True for transports that cross the wire in cleartext.
  public var isCleartext: Bool { self == .do53UDP || self == .do53TCP }

  /// Hashes the case, not the raw value (as `EncryptedTransport` does): the per-server query
  /// counts are keyed by it, counted once per query.
  public func hash(into hasher: inout Hasher) {
    let index: UInt8 =
      switch self {
      case .do53UDP: 0
      case .do53TCP: 1
      case .dot: 2
      case .doq: 3
      }
    hasher.combine(index)
  }
}

/// One query sent to an authoritative server while resolving a client query.
public struct Hop: Sendable, Codable, Hashable {
  /// Server address as text (`192.0.2.1` or `2001:db8::1`).
  public var server: String
  /// The NS name the address belongs to, where known.
  public var nsName: String? {
    get { nsNameText?.description }
    set { nsNameText = newValue.map { NameText($0) } }
  }
  /// The zone the server was asked as an authority for.
  public var zone: String {
    get { zoneText.description }
    set { zoneText = NameText(newValue) }
  }
  /// The QNAME actually sent (after minimisation).
  public var qname: String {
    get { qnameText.description }
    set { qnameText = NameText(newValue) }
  }
  /// `nsName` as the iteration gave it, written out only when read.
  public var nsNameText: NameText?
  /// `zone` as the iteration gave it, written out only when read.
  public var zoneText: NameText
  /// `qname` as the iteration gave it, written out only when read.
  public var qnameText: NameText
  public var qtype: String
  public var transport: TransportKind
  /// Round-trip time in milliseconds, nil on timeout or error.
  public var rttMs: Double?
  /// `referral`, `answer`, `cname`, `nodata`, `nxdomain`, `timeout`, `servfail`, `refused`, `lame`, `malformed`, ...
  public var outcome: String
  /// Why this transport was used ("DoT: session established", "Do53: DoT damped until ...").
  public var reason: String? {
    get { transportReason?.description }
    set { transportReason = newValue.map { TransportReason($0) } }
  }
  /// `reason` as the policy gave it, written out only when read.
  public var transportReason: TransportReason?
  /// Encrypted hops: session resumed from a ticket; 0-RTT early data accepted (nil: none sent).
  public var resumed: Bool?
  public var earlyData: Bool?

  /// The JSON keys are the texts' names (`nsName`, `zone`, `qname`, `reason`).
  enum CodingKeys: String, CodingKey {
    case server, qtype, transport, rttMs, outcome, resumed, earlyData
    case nsNameText = "nsName"
    case zoneText = "zone"
    case qnameText = "qname"
    case transportReason = "reason"
  }

  public init(
    server: String, nsName: String?, zone: String, qname: String, qtype: String,
    transport: TransportKind, rttMs: Double?, outcome: String, reason: String? = nil
  ) {
    self.init(
      server: server, nsName: nsName.map { NameText($0) }, zone: NameText(zone), qname: NameText(qname),
      qtype: qtype, transport: transport, rttMs: rttMs, outcome: outcome)
    self.transportReason = reason.map { TransportReason($0) }
  }

  /// A hop whose names are written out only when read.
  public init(
    server: String, nsName: NameText?, zone: NameText, qname: NameText, qtype: String,
    transport: TransportKind, rttMs: Double?, outcome: String
  ) {
    self.server = server
    self.nsNameText = nsName
    self.zoneText = zone
    self.qnameText = qname
    self.qtype = qtype
    self.transport = transport
    self.rttMs = rttMs
    self.outcome = outcome
  }
}

/// The outcome of resolving one question: what a client gets, plus how it was obtained.
public struct Resolution: Sendable {
  public var rcode: RCode
  /// The answer section, including any CNAME/DNAME chain.
  public var answer: [ResourceRecord]
  /// The authority section (the SOA for negative answers).
  public var authority: [ResourceRecord]
  /// True when no query left the resolver for this answer.
  public var fromCache: Bool
  /// Every query sent, in order (empty on a cache hit).
  public var hops: [Hop]
  /// Wall time spent, in milliseconds.
  public var elapsedMs: Double
  /// A short reason when `rcode` is SERVFAIL, or why a stale answer was given (for logs and `lookup`).
  public var failureReason: String?
  /// Answered with expired data: no fresh answer in time (serve-stale, RFC 8767: the refresh failed, is still running, or was not started); `failureReason` says which.
  public var stale = false

  public init(
    rcode: RCode, answer: [ResourceRecord] = [], authority: [ResourceRecord] = [], fromCache: Bool = false,
    hops: [Hop] = [], elapsedMs: Double = 0, failureReason: String? = nil
  ) {
    self.rcode = rcode
    self.answer = answer
    self.authority = authority
    self.fromCache = fromCache
    self.hops = hops
    self.elapsedMs = elapsedMs
    self.failureReason = failureReason
  }
}

/// Anything that can answer a question recursively; the listener and the CLI depend only on this.
public protocol QueryResolving: Sendable {
  /// Resolves `question` completely (from cache or by iteration). Never throws: failures are SERVFAIL.
  nonisolated(nonsending) func resolve(_ question: Question) async -> Resolution
  /// Resolutions still going on upstream after their client was answered (serve-stale refreshes):
  /// the listener counts them against its resolution cap.
  var backgroundResolutions: Int { get }
  /// True when an identical question is being resolved now: resolving it again joins that
  /// resolution and starts no upstream work of its own (the listener does not count it against
  /// its resolution cap).
  func isResolving(_ question: Question) -> Bool
}

extension QueryResolving {
  public var backgroundResolutions: Int { 0 }
  public func isResolving(_ question: Question) -> Bool { false }
}

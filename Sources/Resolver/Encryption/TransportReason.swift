/// Why a query went over the transport it used ("DoT: session established", "Do53: DoT damped
/// until 2026-12-01 05:40 UTC after refused"), kept as its parts and written out only when read.
///
/// The policy decides for every upstream exchange, and a cold resolution to a server whose
/// encrypted transports are damped built its reason from several interpolated strings and a
/// `gmtime_r` call each time (about 2% of the CPU of a cold resolution with encryption on). Most
/// reasons are never read: they are shown for the hops a user looks at (`lookup`, the dashboard).
public struct TransportReason: Sendable, CustomStringConvertible, ExpressibleByStringInterpolation {
  /// One transport's part of a Do53 reason.
  enum Part: Sendable {
    case probeStarted(EncryptedTransport)
    case probeSkipped(EncryptedTransport, cap: Int)
    case damped(EncryptedTransport, until: Double, cause: String?)
    case probing(EncryptedTransport)

    var text: String {
      switch self {
      case .probeStarted(let t): "\(t.rawValue) probe started"
      case .probeSkipped(let t, let cap): "\(t.rawValue) probe skipped: \(cap) probes in flight"
      case .damped(let t, let until, let cause):
        "\(t.rawValue) damped until \(EncryptionTable.clock(until))\(cause.map { " after \($0)" } ?? "")"
      case .probing(let t): "\(t.rawValue) probe in flight"
      }
    }
  }

  /// A Do53 reason's parts in order: the first two inline (one per encrypted transport), any
  /// more in an array, so the usual reason allocates nothing.
  struct Parts: Sendable {
    private var first: Part?
    private var second: Part?
    private var more: [Part] = []

    init() {}

    mutating func append(_ part: Part) {
      if first == nil {
        first = part
      } else if second == nil {
        second = part
      } else {
        more.append(part)
      }
    }

    var all: [Part] { [first, second].compactMap { $0 } + more }
  }

  private enum Storage: Sendable {
    case text(String)
    /// "Do53", or "Do53: " and the parts joined by "; ".
    case do53(Parts)
  }

  private let storage: Storage

  /// A reason given as text.
  public init(_ text: String) { storage = .text(text) }

  /// A reason given as a literal.
  public init(stringLiteral value: String) { storage = .text(value) }

  /// A reason given as an interpolated string.
  public init(stringInterpolation: DefaultStringInterpolation) {
    storage = .text(String(stringInterpolation: stringInterpolation))
  }

  /// A Do53 reason made of these transports' parts.
  init(do53 parts: Parts) { storage = .do53(parts) }

  public var description: String {
    switch storage {
    case .text(let s): return s
    case .do53(let parts):
      let texts = parts.all.map(\.text)
      return texts.isEmpty ? "Do53" : "Do53: " + texts.joined(separator: "; ")
    }
  }
}

extension TransportReason: Equatable, Hashable {
  /// Reasons are equal when they read the same.
  public static func == (a: TransportReason, b: TransportReason) -> Bool { a.description == b.description }
  /// Hashes the text, as `==` compares it.
  public func hash(into hasher: inout Hasher) { hasher.combine(description) }
}

extension TransportReason: Codable {
  /// Encoded as its text.
  public init(from decoder: any Decoder) throws {
    self.init(try decoder.singleValueContainer().decode(String.self))
  }

  /// Encodes the text.
  public func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(description)
  }
}

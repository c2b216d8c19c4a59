/// A domain name as a hop or a log entry shows it: kept as the `DNSName` the iteration had (or as
/// given text) and written out in presentation form only when read.
///
/// Every upstream exchange records a hop with its zone, QNAME and NS name; making their text then
/// cost three presentation passes and, for names over 15 characters, a string allocation each,
/// for hops that are mostly never shown.
public struct NameText: Sendable, Hashable, CustomStringConvertible, Codable {
  private enum Storage: Sendable {
    case name(DNSName)
    case text(String)
  }

  private let storage: Storage

  /// The name, written out when read.
  public init(_ name: DNSName) { storage = .name(name) }

  /// A name given as text (shown as given).
  public init(_ text: String) { storage = .text(text) }

  /// Presentation form with a trailing dot (as `DNSName.description`), or the text given.
  public var description: String {
    switch storage {
    case .name(let n): n.description
    case .text(let s): s
    }
  }

  /// Equal when they read the same (a name equals its text; spellings that differ in case differ).
  public static func == (a: NameText, b: NameText) -> Bool {
    switch (a.storage, b.storage) {
    case (.name(let x), .name(let y)): x.storage == y.storage
    case (.text(let x), .text(let y)): x == y
    default: a.description == b.description
    }
  }

  /// Hashes the text, as `==` compares it.
  public func hash(into hasher: inout Hasher) { hasher.combine(description) }

  /// The name as spelled, for keys that must not make text: equal when spelled the same way
  /// (case included); a name and its text are different spellings here.
  enum Spelling: Hashable, Sendable {
    case wire([UInt8])
    case text(String)

    /// A wire form goes to the hasher eight octets to a word (`DNSName.hashWords`, case kept as
    /// `==` compares it): the synthesized hash fed it an octet at a time, about 650 instructions
    /// per cleartext hop the Privacy figures count (callgrind).
    func hash(into hasher: inout Hasher) {
      switch self {
      case .wire(let bytes):
        hasher.combine(0 as UInt8)
        bytes.withUnsafeBytes { DNSName.hashWords($0, lowering: false, into: &hasher) }
      case .text(let text):
        hasher.combine(1 as UInt8)
        hasher.combine(text)
      }
    }
  }

  /// This value's spelling (no text is made for a name).
  var spelling: Spelling {
    switch storage {
    case .name(let n): .wire(n.storage)
    case .text(let s): .text(s)
    }
  }

  /// Decodes the text.
  public init(from decoder: any Decoder) throws { self.init(try decoder.singleValueContainer().decode(String.self)) }

  /// Encodes the text.
  public func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(description)
  }
}

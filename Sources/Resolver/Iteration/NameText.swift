/// A domain name as a hop or a log entry shows it: kept as the `DNSName` the iteration had (or as
/// given text) and written out in presentation form only when read.
///
/// Every upstream exchange records a hop with its zone, QNAME and NS name; making their text then
/// cost three presentation passes and, for names over 15 characters, a string allocation each,
/// for hops that are mostly never shown.
public struct NameText: Sendable, Hashable, CustomStringConvertible, Codable {
  private enum Storage: Sendable, Hashable {
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

  // Equality and hashing are the storage's, so no text is made for them: two names are equal as
  // `DNSName`s are (case-insensitively), two texts as strings, a name never equals a text.

  /// Encoded as its text.
  public init(from decoder: any Decoder) throws { self.init(try decoder.singleValueContainer().decode(String.self)) }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(description)
  }
}

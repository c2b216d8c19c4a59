// CONTRACT STUBS: the wire helper replaces these with real implementations in their own files
// and deletes this file. Signatures are the contract other code builds on.

extension Message {
  /// Parses a whole message; any malformation throws a `WireError`.
  public static func parse(_ bytes: [UInt8]) throws(WireError) -> Message { fatalError("stub") }
  /// Writes the message with name compression. When `maxSize` is given and the message does not
  /// fit, whole records are dropped from the end (additional, then authority, then answer) and TC is set.
  public func serialize(maxSize: Int? = nil) -> [UInt8] { fatalError("stub") }
}

extension ResourceRecord {
  /// Zone-file style line as `dig` prints it: `name.\tTTL\tIN\tTYPE\tRDATA`.
  public var presentation: String { fatalError("stub") }
}

extension RData {
  /// Presentation format of the data alone (for example `10 mail.example.`).
  public var presentation: String { fatalError("stub") }
  /// Parses RDATA presentation text for `type` (zone-file style, RFC 3597 `\# len hex` for any type).
  public static func parse(presentation: String, type: RRType, origin: DNSName) throws(WireError) -> RData {
    fatalError("stub")
  }
}

extension IPv6Address {
  static func parse(_ text: String) -> [UInt8]? { fatalError("stub") }
  static func format(_ octets: [UInt8]) -> String { fatalError("stub") }
}

/// Master-file (RFC 1035 §5) reader: `$ORIGIN`, `$TTL`, `@`, relative names, omitted owner/TTL/class,
/// parentheses, comments, quoted strings. Used for root hints and lab zones.
public enum ZoneFile {
  public static func parse(_ text: String, origin: DNSName = .root, defaultTTL: UInt32 = 3600) throws(WireError) -> [ResourceRecord] {
    fatalError("stub")
  }
}

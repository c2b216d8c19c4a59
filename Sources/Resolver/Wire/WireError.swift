/// Why a DNS message, name or record could not be read or written.
public enum WireError: Error, Equatable, Sendable {
  /// The data ended before the field at this offset was complete.
  case truncated(offset: Int)
  /// A compression pointer at this offset points after itself (forward pointer).
  case forwardPointer(offset: Int)
  /// Following compression pointers revisited a position, or a pointer points at itself (pointer loop).
  case pointerLoop(offset: Int)
  /// A label's length byte uses the reserved 0b01/0b10 prefixes.
  case badLabelType(offset: Int)
  /// A label is longer than 63 octets.
  case labelTooLong(length: Int)
  /// A name is longer than 255 octets in wire form.
  case nameTooLong(length: Int)
  /// An empty label appeared inside a name (for example `a..b`).
  case emptyLabel
  /// RDLENGTH disagrees with the data the type requires.
  case badRDataLength(type: UInt16, offset: Int)
  /// Bytes were left over after the last section (or after RDATA fields).
  case trailingData(count: Int)
  /// More than one OPT record, or an OPT record outside the additional section or not at the root.
  case badOPT(String)
  /// A UDP reply without the DNS Cookie its server sent before (RFC 7873 §5.3): not taken as
  /// the server's, and the query goes over TCP, where a reply without one is accepted.
  case missingCookie
  /// An NSEC/NSEC3 type bitmap window at this offset is malformed (RFC 4034 §4.1.2).
  case badTypeBitmap(offset: Int)
  /// A text field could not be parsed (presentation format).
  case badPresentation(String)
  /// A field value is out of range (for example a character-string over 255 octets).
  case valueOutOfRange(String)
}

extension WireError: CustomStringConvertible {
  /// What was wrong, in words (CLI errors, root hints and zone files, logs): "a label of 300
  /// octets (at most 63)", not the case's debug form.
  public var description: String {
    switch self {
    case .truncated(let offset): "the data ends inside the field at offset \(offset)"
    case .forwardPointer(let offset): "a compression pointer at offset \(offset) points forward"
    case .pointerLoop(let offset): "compression pointers loop (at offset \(offset))"
    case .badLabelType(let offset): "the label at offset \(offset) has a reserved type"
    case .labelTooLong(let length): "a label of \(length) octets (at most 63)"
    case .nameTooLong(let length): "a name of \(length) octets (at most 255 in wire form)"
    case .emptyLabel: "an empty label (two dots in a row, or a name starting with a dot)"
    case .badRDataLength(let type, let offset):
      "the \(RRType(type)) record's RDATA length at offset \(offset) does not fit its data"
    case .trailingData(let count): "\(count) octets left over after the last field"
    case .badOPT(let why): "bad OPT record: \(why)"
    case .missingCookie: "a UDP reply without the DNS cookie its server sent before"
    case .badTypeBitmap(let offset): "a malformed type bitmap at offset \(offset)"
    case .badPresentation(let why): why
    case .valueOutOfRange(let why): "out of range: \(why)"
    }
  }
}

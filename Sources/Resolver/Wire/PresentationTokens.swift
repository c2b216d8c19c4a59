/// One whitespace-separated field of master-file text (RFC 1035 §5.1).
struct PresentationToken: Equatable {
  /// Raw text with backslash escapes still in place; for quoted strings, the text between the quotes.
  var text: String
  var quoted: Bool
}

/// One logical master-file entry: its tokens (parentheses already joined) and where it started.
struct PresentationEntry {
  var tokens: [PresentationToken]
  var line: Int
  /// True when the entry's first line began with blank space (owner omitted).
  var leadingBlank: Bool
}

enum PresentationLexer {
  /// Splits text into entries; `;` comments, quotes, escapes and `( ... )` spanning lines are handled.
  static func entries(_ text: String) throws(WireError) -> [PresentationEntry] {
    var entries: [PresentationEntry] = []
    let bytes = Array(text.utf8)
    var i = 0
    var line = 1
    var depth = 0
    var openLine = 0
    var current: [PresentationToken] = []
    var entryLine = 1
    var leadingBlank = false
    var atLineStart = true

    func flush() {
      if !current.isEmpty {
        entries.append(PresentationEntry(tokens: current, line: entryLine, leadingBlank: leadingBlank))
      }
      current = []
    }

    while i < bytes.count {
      let c = bytes[i]
      if atLineStart && depth == 0 {
        flush()
        entryLine = line
        leadingBlank = c == UInt8(ascii: " ") || c == UInt8(ascii: "\t")
        atLineStart = false
      }
      switch c {
      case UInt8(ascii: "\n"):
        line += 1
        atLineStart = true
        i += 1
      case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
        i += 1
      case UInt8(ascii: ";"):
        while i < bytes.count, bytes[i] != UInt8(ascii: "\n") { i += 1 }
      case UInt8(ascii: "("):
        if depth == 0 { openLine = line }
        depth += 1
        i += 1
      case UInt8(ascii: ")"):
        guard depth > 0 else { throw .badPresentation("line \(line): unbalanced ')'") }
        depth -= 1
        i += 1
      case UInt8(ascii: "\""):
        var j = i + 1
        var s: [UInt8] = []
        let quoteLine = line
        while true {
          guard j < bytes.count else { throw .badPresentation("line \(quoteLine): unterminated quoted string") }
          let d = bytes[j]
          if d == UInt8(ascii: "\"") { break }
          if d == UInt8(ascii: "\n") { line += 1 }
          if d == UInt8(ascii: "\\"), j + 1 < bytes.count {
            s.append(d)
            s.append(bytes[j + 1])
            j += 2
            continue
          }
          s.append(d)
          j += 1
        }
        current.append(PresentationToken(text: String(decoding: s, as: UTF8.self), quoted: true))
        i = j + 1
      default:
        var j = i
        var s: [UInt8] = []
        while j < bytes.count {
          let d = bytes[j]
          if d == UInt8(ascii: "\\"), j + 1 < bytes.count {
            s.append(d)
            s.append(bytes[j + 1])
            j += 2
            continue
          }
          if [
            UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"),
            UInt8(ascii: ";"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "\""),
          ].contains(d) {
            break
          }
          s.append(d)
          j += 1
        }
        current.append(PresentationToken(text: String(decoding: s, as: UTF8.self), quoted: false))
        i = j
      }
    }
    if depth != 0 { throw .badPresentation("line \(openLine): unbalanced '('") }
    flush()
    return entries
  }

  /// Decodes `\X` and `\DDD` escapes into octets.
  static func unescape(_ text: String) throws(WireError) -> [UInt8] {
    let b = Array(text.utf8)
    var out: [UInt8] = []
    var i = 0
    while i < b.count {
      if b[i] == UInt8(ascii: "\\") {
        guard i + 1 < b.count else { throw .badPresentation("dangling backslash") }
        if (48...57).contains(b[i + 1]) {
          guard i + 3 < b.count, (48...57).contains(b[i + 2]), (48...57).contains(b[i + 3]) else {
            throw .badPresentation("bad \\DDD escape")
          }
          let v = Int(b[i + 1] - 48) * 100 + Int(b[i + 2] - 48) * 10 + Int(b[i + 3] - 48)
          guard v <= 255 else { throw .badPresentation("\\DDD escape over 255") }
          out.append(UInt8(v))
          i += 4
        } else {
          out.append(b[i + 1])
          i += 2
        }
      } else {
        out.append(b[i])
        i += 1
      }
    }
    return out
  }

  /// Resolves `@`, absolute and relative names against `origin`.
  static func name(_ text: String, origin: DNSName) throws(WireError) -> DNSName {
    if text == "@" { return origin }
    let b = Array(text.utf8)
    var absolute = false
    if b.last == UInt8(ascii: ".") {
      var slashes = 0
      var k = b.count - 2
      while k >= 0, b[k] == UInt8(ascii: "\\") {
        slashes += 1
        k -= 1
      }
      absolute = slashes % 2 == 0
    }
    let parsed = try DNSName(text)
    if absolute { return parsed }
    return try DNSName(labels: parsed.labels + origin.labels)
  }
}

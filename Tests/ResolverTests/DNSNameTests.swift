import Testing

@testable import Resolver

@Suite struct DNSNameTests {
  @Test func parsesAndPrints() throws {
    let n = try DNSName("WWW.Example.com")
    #expect(n.description == "WWW.Example.com.")
    #expect(n == (try DNSName("www.example.com.")))
    #expect(n.labelCount == 3)
    #expect(n.isSubdomain(of: try DNSName("example.COM")))
    #expect(!(try DNSName("example.com")).isSubdomain(of: n))
  }
  /// Cache and in-flight tables key on names: differently cased spellings must find one entry,
  /// also for labels longer than the 8-byte words the hash packs them into.
  @Test func hashIgnoresCaseAcrossWords() throws {
    let upper = try DNSName("Cold-Resolution-1234.WILD.Example.TEST")
    let lower = try DNSName("cold-resolution-1234.wild.example.test")
    #expect(upper.hashValue == lower.hashValue)
    let table: [DNSName: Int] = [upper: 1]
    #expect(table[lower] == 1)
    #expect(table[try DNSName("cold-resolution-1235.wild.example.test")] == nil)
    #expect(Set([try DNSName("ab.c"), try DNSName("a.bc"), try DNSName("abc")]).count == 3)
  }
  /// Names are lowered and compared eight octets at a time: every octet at every position of a
  /// word, beside neighbours that are capitals, letters and octets above 0x7F, lowers as one octet would.
  @Test func wordLoweringMatchesOctetLowering() {
    var wrong = 0
    for octet in 0...255 {
      for position in 0..<8 {
        for fill: UInt8 in [0, 0x40, 0x41, 0x5A, 0x5B, 0x60, 0x7B, 0x80, 0xC1, 0xFF] {
          var bytes = [UInt8](repeating: fill, count: 8)
          bytes[position] = UInt8(octet)
          let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
          let lowered = withUnsafeBytes(of: DNSName.lowerWord(word)) { Array($0) }
          if lowered != bytes.map(DNSName.lower) { wrong += 1 }
        }
      }
    }
    #expect(wrong == 0)
  }

  /// Equality ignores ASCII case only: in a word that differs, at either end of a word and in the
  /// tail after the last whole word; `@` / `` ` `` and `[` / `{` differ by 0x20 too but are not letters.
  @Test func equalityIgnoresCaseOnlyForLetters() throws {
    for length in [1, 6, 7, 8, 9, 15, 16, 17, 30, 63] {
      let label = String((0..<length).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })
      let lower = try DNSName(label + ".test")
      #expect(lower == (try DNSName(label.uppercased() + ".TEST")))
      #expect(lower.hashValue == (try DNSName(label.uppercased() + ".TEST")).hashValue)
      var chars = Array(label)
      chars[length - 1] = "z" == chars[length - 1] ? "y" : "z"
      #expect(lower != (try DNSName(String(chars) + ".test")))
    }
    #expect((try DNSName("a@b.test")) != (try DNSName("a`b.test")))
    #expect((try DNSName("abcdefg[.test")) != (try DNSName("abcdefg{.test")))
    #expect((try DNSName("abcdefgh.example.tesT")) == (try DNSName("ABCDEFGH.example.test")))
    #expect((try DNSName("abcdefgh.example.test")) != (try DNSName("abcdefgh.example.tesu")))
  }

  @Test func enforcesLimits() {
    #expect(throws: WireError.labelTooLong(length: 64)) { try DNSName(String(repeating: "a", count: 64) + ".com") }
    let long = Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".")
    #expect(throws: WireError.nameTooLong(length: 257)) { try DNSName(long) }
    #expect(throws: WireError.emptyLabel) { try DNSName("a..b") }
  }
  @Test func escapes() throws {
    let n = try DNSName("a\\.b.c")
    #expect(n.labelCount == 2)
    #expect(n.description == "a\\.b.c.")
    #expect(try DNSName("\\065bc").description == "Abc.")
    // Non-printing octets print as three-digit \DDD, specials with a backslash.
    let odd = try DNSName(labels: [[0, 9, 32, 127, 200, 255], Array("a;b(c)@$\"\\".utf8)])
    #expect(odd.description == "\\000\\009\\032\\127\\200\\255.a\\;b\\(c\\)\\@\\$\\\"\\\\.")
    #expect(try DNSName(odd.description) == odd)
  }
  /// The operations the resolver walks names with, on the one-array wire form: a suffix must
  /// start at a label boundary, not at octets that merely look alike.
  @Test func ancestorsAndSubdomainsFollowLabelBoundaries() throws {
    let n = try DNSName("www.Example.com")
    #expect(n.parent == (try DNSName("example.com")))
    #expect(n.parent?.parent?.parent == .root)
    #expect(DNSName.root.parent == nil)
    #expect(n.suffix(labelCount: 2).description == "Example.com.")
    #expect(n.suffix(labelCount: 0) == .root)
    #expect(n.suffix(labelCount: 9) == n)
    #expect(!(try DNSName("example.com")).isSubdomain(of: try DNSName("ample.com")))
    // "\003com" inside a label of the longer name is not a label boundary.
    #expect(!(try DNSName("a\003com.net")).isSubdomain(of: try DNSName("com.net")))
    #expect(n.isSubdomain(of: .root))
    #expect(try n.prepending(Array("A".utf8)).description == "A.www.Example.com.")
    #expect(n.labels == [Array("www".utf8), Array("Example".utf8), Array("com".utf8)])
    #expect(n.wireLength == 17)
    #expect(DNSName.root.labelCount == 0 && DNSName.root.wireLength == 1)
    #expect(n.lowercased().description == "www.example.com.")
    let label63 = String(repeating: "a", count: 63)
    let long = try DNSName([label63, label63, label63].joined(separator: "."))
    #expect(throws: WireError.nameTooLong(length: 256)) {
      try long.prepending(Array(repeating: 98, count: 62))
    }
  }
  /// Names rebuilt from a cache key's owner: a malformed form is cut at the last whole label
  /// instead of making a name that breaks the walks above.
  @Test func uncheckedWireStopsAtTheLastWholeLabel() {
    #expect(DNSName(uncheckedWire: [3, 119, 119, 119, 0]).description == "www.")
    #expect(DNSName(uncheckedWire: [3, 119, 119, 119, 5, 1]).description == "www.")
    #expect(DNSName(uncheckedWire: [3, 119, 119, 119]).description == ".")
    #expect(DNSName(uncheckedWire: []) == .root)
  }
}

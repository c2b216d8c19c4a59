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

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
  }
}

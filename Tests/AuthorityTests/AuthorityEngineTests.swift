import Resolver
import Testing

@testable import Authority

/// The authoritative answer logic, on the demo's zone data.
@Suite struct AuthorityEngineTests {
  @Test func rootRefersToTheTLDWithGlue() throws {
    let r = try demoEngine(".").answer(try testQuery("www.dot.test."))
    #expect(r.rcode == .noError && !r.header.aa && r.answers.isEmpty)
    #expect(r.authority.map(\.type) == [.ns])
    #expect(r.additional.map(\.name.description) == ["ns1.test."])
    #expect(r.additional.first?.rdata == IPv4Address("127.77.1.1").map(RData.a))
  }

  @Test func leafAnswersAuthoritatively() throws {
    let r = try demoEngine("dot.test.").answer(try testQuery("www.dot.test.", id: 9))
    #expect(r.header.id == 9 && r.header.aa && r.rcode == .noError)
    #expect(r.answers.count == 1 && r.answers.first?.type == .a)
  }

  @Test func missingNameIsNXDOMAINWithTheSOA() throws {
    let r = try demoEngine("dot.test.").answer(try testQuery("nope.dot.test."))
    #expect(r.rcode == .nxDomain && r.header.aa && r.answers.isEmpty)
    #expect(r.authority.map(\.type) == [.soa])
  }

  @Test func missingTypeIsNODATAWithTheSOA() throws {
    let r = try demoEngine("dot.test.").answer(try testQuery("www.dot.test.", .mx))
    #expect(r.rcode == .noError && r.answers.isEmpty && r.authority.map(\.type) == [.soa])
  }

  @Test func emptyNonTerminalIsNODATA() throws {
    let r = try demoEngine("dot.test.").answer(try testQuery("_udp.dot.test.", .srv))
    #expect(r.rcode == .noError && r.answers.isEmpty && r.authority.map(\.type) == [.soa])
  }

  @Test func cnameIsFollowedInsideTheZone() throws {
    let r = try demoEngine("dot.test.").answer(try testQuery("alias.dot.test."))
    #expect(r.answers.map(\.type) == [.cname, .a])
  }

  @Test func namesOutsideTheZonesAreRefused() throws {
    let r = try demoEngine("dot.test.").answer(try testQuery("www.example.org."))
    #expect(r.rcode == .refused && r.answers.isEmpty)
  }

  @Test func bigAnswersAreTruncatedOverUDPOnly() throws {
    var text = "$ORIGIN big.test.\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 127.0.0.1\n"
    for i in 0..<40 { text += "txt TXT \"\(String(repeating: "x", count: 60))-\(i)\"\n" }
    let engine = AuthorityEngine(zones: [try Zone(origin: try DNSName("big.test."), text: text)])
    var q = try testQuery("txt.big.test.", .txt)
    q.edns = nil
    let udp = try Message.parse(try #require(engine.respond(to: q.serialize(), overTCP: false)))
    #expect(udp.header.tc && udp.answers.count < 40)
    let tcp = try Message.parse(try #require(engine.respond(to: q.serialize(), overTCP: true)))
    #expect(!tcp.header.tc && tcp.answers.count == 40)
  }

  @Test func garbageGetsFormErrOrNothing() throws {
    let engine = try demoEngine("dot.test.")
    let formErr = try #require(engine.respond(to: [0x12, 0x34, 0x01, 0x00] + [UInt8](repeating: 0xFF, count: 20)))
    #expect(formErr[0] == 0x12 && formErr[1] == 0x34 && formErr[3] & 0x0F == 1)
    #expect(engine.respond(to: [1, 2, 3]) == nil)
    var response = try testQuery("www.dot.test.")
    response.header.qr = true
    #expect(engine.respond(to: response.serialize()) == nil)  // never answer a response
  }

  @Test func zonesWithoutSOAOrWithForeignRecordsAreRejected() {
    #expect(throws: ZoneError.noSOA(zone: "x.test.")) {
      try Zone(origin: try DNSName("x.test."), text: "$ORIGIN x.test.\nwww A 192.0.2.1\n")
    }
    #expect(throws: ZoneError.self) {
      try Zone(origin: try DNSName("x.test."), text: "$ORIGIN x.test.\n@ SOA ns hm 1 1 1 1 1\nwww.other. A 192.0.2.1\n")
    }
  }
}

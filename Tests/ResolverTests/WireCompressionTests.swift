import Testing

@testable import Resolver

/// Number of compression pointers (0b11 prefix followed by an in-range offset) is hard to count
/// blindly, so tests look for specific pointer octet pairs.
private func containsPointer(_ bytes: [UInt8], to offset: Int) -> Bool {
  let p: [UInt8] = [0xC0 | UInt8(offset >> 8), UInt8(offset & 0xFF)]
  return bytes.indices.dropLast().contains { bytes[$0] == p[0] && bytes[$0 + 1] == p[1] }
}

@Suite struct WireCompressionTests {
  @Test func repeatedNamesAreCompressed() throws {
    var m = Message()
    m.questions = [Question(name: wn("www.example.com."), type: .a)]
    m.answers = [wrr("www.example.com.", .cname, .cname(wn("mail.example.com.")))]
    let bytes = m.serialize()
    // 12 header + 21 question + (2 owner pointer + 10 fixed + 4+1 "mail" + 2 pointer) = 52
    #expect(bytes.count == 52)
    #expect(containsPointer(bytes, to: 12))  // owner -> question name
    #expect(containsPointer(bytes, to: 16))  // "example.com" suffix
    #expect(try Message.parse(bytes) == m)
  }

  @Test func manyRecordsShareOneName() throws {
    var m = Message()
    m.questions = [Question(name: wn("host.example.org."), type: .a)]
    m.answers = (1...20).map { wrr("host.example.org.", .a, .a(IPv4Address(octets: [10, 0, 0, UInt8($0)])!)) }
    let bytes = m.serialize()
    #expect(bytes.count == 12 + (18 + 4) + 20 * (2 + 10 + 4))
    #expect(try Message.parse(bytes) == m)
  }

  @Test func casePreservedThroughCompression() throws {
    var m = Message()
    m.questions = [Question(name: wn("WWW.Example.COM."), type: .cname)]
    m.answers = [wrr("www.example.com.", .cname, .cname(wn("Mail.EXAMPLE.com.")))]
    let bytes = m.serialize()
    #expect(bytes.count == 52)  // matched case-insensitively
    let back = try Message.parse(bytes)
    #expect(back.questions[0].name.description == "WWW.Example.COM.")
    // The first label is written as given; the suffix shares the earlier spelling.
    guard case .cname(let target) = back.answers[0].rdata else {
      Issue.record("not a CNAME")
      return
    }
    #expect(target.description == "Mail.Example.COM.")
    #expect(target == wn("mail.example.com."))
  }

  @Test func uncompressedFirstOccurrenceKeepsItsCase() throws {
    var m = Message()
    m.answers = [wrr("MiXeD.CaSe.", .txt, .txt([[0x61]]))]
    let back = try Message.parse(m.serialize())
    #expect(back.answers[0].name.labels == [Array("MiXeD".utf8), Array("CaSe".utf8)])
  }

  @Test func pointerToPointer() throws {
    // Question "a.example." at 12; answer owner is a pointer to 12 (at offset 27);
    // NS data is "b" plus a pointer to that pointer.
    let bytes: [UInt8] = [
      0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
      1, 0x61, 7, 0x65, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0, 0, 2, 0, 1,
      0xC0, 12, 0, 2, 0, 1, 0, 0, 0, 60, 0, 4, 1, 0x62, 0xC0, 27,
    ]
    let m = try Message.parse(bytes)
    #expect(m.answers[0].name == wn("a.example."))
    #expect(m.answers[0].rdata == .ns(wn("b.a.example.")))
  }

  @Test func compressedNamesReadInsideRFC1035Types() throws {
    var m = Message()
    m.questions = [Question(name: wn("example.net."), type: .soa)]
    m.answers = [
      wrr(
        "example.net.", .soa,
        .soa(
          mname: wn("ns.example.net."), rname: wn("admin.example.net."), serial: 1, refresh: 2, retry: 3, expire: 4,
          minimum: 5)),
      wrr("example.net.", .mx, .mx(preference: 5, exchange: wn("mx.example.net."))),
      wrr("x.example.net.", .ptr, .ptr(wn("ns.example.net."))),
    ]
    let bytes = m.serialize()
    #expect(containsPointer(bytes, to: 12))
    #expect(try Message.parse(bytes) == m)
  }

  @Test(arguments: [RRType.srv, .dname, .rrsig, .nsec, .svcb])
  func namesInNewerTypesAreNotCompressed(_ type: RRType) throws {
    let target = wn("target.example.")
    let rdata: RData =
      switch type {
      case .srv: .srv(priority: 1, weight: 1, port: 1, target: target)
      case .dname: .dname(target)
      case .rrsig:
        .rrsig(
          typeCovered: .a, algorithm: 8, labels: 2, originalTTL: 1, expiration: 2, inception: 1, keyTag: 1,
          signerName: target, signature: [1])
      case .nsec: .nsec(nextName: target, types: [.a])
      default: .svcb(priority: 1, target: target, params: [])
      }
    var m = Message()
    m.questions = [Question(name: target, type: type)]
    m.answers = [ResourceRecord(name: wn("x."), type: type, ttl: 1, rdata: rdata)]
    let bytes = m.serialize()
    let rdataBytes = Array(bytes.suffix(rdata.wireBytes.count))
    #expect(rdataBytes == rdata.wireBytes)  // full name, no pointer
    #expect(try Message.parse(bytes) == m)
  }

  /// A name written in full inside a non-compressing RDATA (SRV target) is still a pointer target
  /// for a later owner name; a suffix seen twice points at its first occurrence.
  @Test func uncompressedNamesAreTargetsAndFirstOccurrenceWins() throws {
    var m = Message()
    m.answers = [
      wrr("_s._tcp.example.", .srv, .srv(priority: 1, weight: 1, port: 1, target: wn("host.example."))),
      wrr("other.example.", .a, .a(IPv4Address("192.0.2.1")!)),
      wrr("HOST.Example.", .a, .a(IPv4Address("192.0.2.2")!)),
    ]
    let bytes = m.serialize()
    // Owner "_s._tcp.example." at 12; "example." starts at 12 + 1 + 2 + 1 + 4 = 20.
    // The SRV target "host.example." is written in full after the fixed fields (12 + 17 + 10 + 6).
    let srvTarget = 12 + 17 + 10 + 6
    #expect(Array(bytes[srvTarget..<srvTarget + 5]) == [4] + Array("host".utf8))
    #expect(Array(bytes[srvTarget + 5..<srvTarget + 14]) == [7] + Array("example".utf8) + [0])  // not compressed
    #expect(containsPointer(bytes, to: 20))  // "other.example." -> the owner's suffix, first seen
    #expect(!containsPointer(bytes, to: srvTarget + 5))  // never the later copy of "example."
    #expect(Array(bytes.suffix(16).prefix(2)) == [0xC0, UInt8(srvTarget)])  // last owner -> the SRV target
    let back = try Message.parse(bytes)
    #expect(back == m)
    #expect(back.answers[2].name.description == "host.example.")  // the spelling pointed to
  }

  /// An iterative query (one name, EDNS) comes out byte for byte as RFC 1035 lays it out.
  @Test func oneQuestionQueryIsWrittenInFull() {
    var m = Message()
    m.header.id = 0x1234
    m.questions = [Question(name: wn("a.Example."), type: .ns)]
    m.edns = EDNS(udpPayloadSize: 1232)
    let expected: [UInt8] =
      [0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0x61, 7] + Array("Example".utf8)
      + [0, 0, 2, 0, 1, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]
    #expect(m.serialize() == expected)
  }

  @Test func maximumLengthName() throws {
    let l63 = String(repeating: "a", count: 63)
    let name = wn("\(l63).\(l63).\(l63).\(String(repeating: "b", count: 61)).")
    #expect(name.wireLength == 255)
    var m = Message()
    m.questions = [Question(name: name, type: .a)]
    m.answers = [wrr(name.description, .a, .a(IPv4Address("1.2.3.4")!)), wrr(name.description, .ns, .ns(name))]
    let bytes = m.serialize()
    #expect(bytes.count == 12 + 259 + (2 + 10 + 4) + (2 + 10 + 2))
    #expect(try Message.parse(bytes) == m)
    #expect(throws: WireError.nameTooLong(length: 256)) {
      try DNSName(labels: Array(name.labels.dropLast()) + [[UInt8](repeating: 0x62, count: 62)])
    }
  }

  @Test func rootName() throws {
    var m = Message()
    m.questions = [Question(name: .root, type: .ns)]
    m.answers = [wrr(".", .ns, .ns(wn("a.root-servers.net."))), wrr(".", .ns, .ns(wn("b.root-servers.net.")))]
    let bytes = m.serialize()
    #expect(Array(bytes[12..<17]) == [0, 0, 2, 0, 1])  // root question is one zero octet
    #expect(bytes[17] == 0)  // root owner is never a pointer
    let back = try Message.parse(bytes)
    #expect(back == m)
    #expect(back.questions[0].name.isRoot)
    #expect(back.answers[1].presentation == ".\t300\tIN\tNS\tb.root-servers.net.")
  }
}

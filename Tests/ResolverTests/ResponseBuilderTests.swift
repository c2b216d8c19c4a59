import NIOCore
import Testing

@testable import Resolver

@Suite struct ResponseBuilderTests {
  static func query(
    _ name: String = "WWW.Example.com", _ type: RRType = .a, qclass: RRClass = .in, id: UInt16 = 0xBEEF,
    edns: EDNS? = nil
  ) -> Message {
    var m = Message()
    m.header.id = id
    m.header.rd = true
    m.header.cd = true
    if let n = try? DNSName(name) { m.questions = [Question(name: n, type: type, qclass: qclass)] }
    m.edns = edns
    return m
  }

  static let record = ResourceRecord(
    name: (try? DNSName("www.example.com")) ?? .root, type: .a, ttl: 60,
    rdata: IPv4Address(octets: [192, 0, 2, 1]).map { RData.a($0) } ?? .unknown([]))

  @Test func acceptedQueryResolvesItsQuestion() {
    let q = Self.query()
    #expect(ResponseBuilder.verdict(for: q) == .resolve(q.questions[0]))
  }

  @Test func responseCopiesHeaderAndQuestionAndCarriesResolution() {
    let q = Self.query()
    let soa = ResourceRecord(name: .root, type: .soa, ttl: 5, rdata: .unknown([]))
    let r = ResponseBuilder.response(
      to: q, resolution: Resolution(rcode: .nxDomain, answer: [Self.record], authority: [soa]))
    #expect(r.header.id == 0xBEEF)
    #expect(r.header.qr && r.header.ra && r.header.rd && r.header.cd)
    #expect(!r.header.aa && !r.header.tc)
    #expect(r.header.opcode == 0)
    #expect(r.questions == q.questions)
    #expect(r.questions[0].name.description == "WWW.Example.com.")
    #expect(r.answers == [Self.record])
    #expect(r.authority == [soa])
    #expect(r.rcode == .nxDomain)
    #expect(r.edns == nil)
  }

  @Test func rdAndCDAreCopiedNotForced() {
    var q = Self.query()
    q.header.rd = false
    q.header.cd = false
    let r = ResponseBuilder.response(to: q, resolution: Resolution(rcode: .noError))
    #expect(!r.header.rd && !r.header.cd && r.header.ra)
  }

  @Test func ednsIsAnsweredWithOurSizeAndNoOptions() {
    let q = Self.query(
      edns: EDNS(udpPayloadSize: 4096, options: [EDNSOption(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]))
    let r = ResponseBuilder.response(to: q, resolution: Resolution(rcode: .noError))
    #expect(r.edns == EDNS(udpPayloadSize: 1232))
  }

  @Test func nonZeroOpcodeIsNotImplemented() {
    var q = Self.query()
    q.header.opcode = 2
    guard case .respond(let r) = ResponseBuilder.verdict(for: q) else {
      Issue.record("expected a response")
      return
    }
    #expect(r.rcode == .notImp)
    #expect(r.header.opcode == 2)
    #expect(r.header.id == 0xBEEF)
  }

  @Test func questionCountOtherThanOneIsFormErr() {
    var none = Self.query()
    none.questions = []
    var two = Self.query()
    two.questions += two.questions
    for q in [none, two] {
      guard case .respond(let r) = ResponseBuilder.verdict(for: q) else {
        Issue.record("expected a response")
        continue
      }
      #expect(r.rcode == .formErr)
      #expect(r.questions.isEmpty)
    }
  }

  @Test func responsesAreDropped() {
    var q = Self.query()
    q.header.qr = true
    #expect(ResponseBuilder.verdict(for: q) == .drop)
  }

  @Test func nonINClassAndZoneTransfersAreRefused() {
    for q in [Self.query(qclass: .ch), Self.query("example.com", .axfr), Self.query("example.com", .ixfr)] {
      guard case .respond(let r) = ResponseBuilder.verdict(for: q) else {
        Issue.record("expected a response")
        continue
      }
      #expect(r.rcode == .refused)
      #expect(r.questions == q.questions)
    }
  }

  @Test func nonRecursiveQueriesAreRefusedWithEDE18() {
    var q = Self.query(edns: EDNS(udpPayloadSize: 1232))
    q.header.rd = false
    guard case .respond(let r) = ResponseBuilder.verdict(for: q) else {
      Issue.record("an RD=0 query must not be resolved or answered from the cache")
      return
    }
    #expect(r.rcode == .refused && r.answers.isEmpty && !r.header.rd)
    #expect(r.questions == q.questions)
    let ede = r.edns?.options.first { $0.code == EDNSOption.extendedErrorCode }
    #expect(ede.map { Array($0.data.prefix(2)) } == [0, 18])
    q.edns = nil
    guard case .respond(let plain) = ResponseBuilder.verdict(for: q) else {
      Issue.record("an RD=0 query without EDNS must be refused too")
      return
    }
    #expect(plain.rcode == .refused && plain.edns == nil)
  }

  @Test func metaTypesOtherThanANYAreFormErr() {
    for code: UInt16 in [41, 128, 248, 249, 250, 253, 254] {
      let q = Self.query("example.com", RRType(rawValue: code))
      guard case .respond(let r) = ResponseBuilder.verdict(for: q) else {
        Issue.record("type \(code): expected a response, not a resolution")
        continue
      }
      #expect(r.rcode == .formErr, "type \(code)")
      #expect(r.questions == q.questions)
    }
    guard case .resolve = ResponseBuilder.verdict(for: Self.query("example.com", RRType(rawValue: 256))) else {
      Issue.record("URI (256) is an ordinary type")
      return
    }
  }

  @Test func ednsVersionAboveZeroIsBadVers() {
    var edns = EDNS(udpPayloadSize: 1400)
    edns.version = 1
    guard case .respond(let r) = ResponseBuilder.verdict(for: Self.query(edns: edns)) else {
      Issue.record("expected a response")
      return
    }
    #expect(r.rcode == .badVers)
    #expect(r.header.rcodeLow == 0)
    #expect(r.edns?.extendedRCode == 1)
    #expect(r.edns?.udpPayloadSize == 1232)
    #expect(r.edns?.version == 0)
  }

  @Test func udpSizeLimits() {
    #expect(ResponseBuilder.maxResponseSize(for: Self.query(), overTCP: false) == 512)
    #expect(ResponseBuilder.maxResponseSize(for: nil, overTCP: false) == 512)
    #expect(ResponseBuilder.maxResponseSize(for: Self.query(edns: EDNS(udpPayloadSize: 4096)), overTCP: false) == 1232)
    #expect(ResponseBuilder.maxResponseSize(for: Self.query(edns: EDNS(udpPayloadSize: 1000)), overTCP: false) == 1000)
    #expect(ResponseBuilder.maxResponseSize(for: Self.query(edns: EDNS(udpPayloadSize: 100)), overTCP: false) == 512)
    #expect(ResponseBuilder.maxResponseSize(for: Self.query(edns: EDNS(udpPayloadSize: 4096)), overTCP: true) == 65_535)
    #expect(ResponseBuilder.maxResponseSize(for: Self.query(), overTCP: true) == 65_535)
  }

  @Test func unparsableWithHeaderGetsFormErrWithItsID() {
    // ID 0x1234, RD set, one question claimed but nothing follows.
    let raw: [UInt8] = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0]
    let r = ResponseBuilder.formErr(forUnparsable: raw)
    #expect(r?.header.id == 0x1234)
    #expect(r?.header.qr == true && r?.header.rd == true)
    #expect(r?.rcode == .formErr)
    #expect(r?.questions.isEmpty == true)
  }

  @Test func runtsAndResponsesAreDroppedWhenUnparsable() {
    #expect(ResponseBuilder.formErr(forUnparsable: [0x12, 0x34, 0x01]) == nil)
    #expect(ResponseBuilder.formErr(forUnparsable: [0x12, 0x34, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0]) == nil)
  }

  /// RFC 8467 §4.1 / RFC 7830: over DoT and DoQ a response to a padded query is padded to a
  /// multiple of 468 octets; an unpadded query, or UDP and TCP, get no padding.
  @Test func responsesToPaddedQueriesAreBlockPaddedOnlyOverEncryptedTransports() throws {
    let padding = EDNSOption(code: EDNSOption.paddingCode, data: [0, 0, 0])
    let padded = Self.query(edns: EDNS(udpPayloadSize: 1232, options: [padding]))
    let response = ResponseBuilder.response(to: padded, resolution: Resolution(rcode: .noError, answer: [Self.record]))
    for transport in [ClientTransport.tls, .quic] {
      let wire = ResponseBuilder.serialize(response, for: padded, via: transport)
      #expect(wire.count % ResponseBuilder.responsePaddingBlock == 0, "\(transport): \(wire.count)")
      let parsed = try Message.parse(wire)
      #expect(parsed.edns?.options.filter { $0.code == EDNSOption.paddingCode }.count == 1)
      #expect(parsed.answers == response.answers)
    }
    for transport in [ClientTransport.udp, .tcp] {
      let wire = ResponseBuilder.serialize(response, for: padded, via: transport)
      #expect(try Message.parse(wire).edns?.options.isEmpty == true, "\(transport)")
    }
    let unpadded = Self.query(edns: EDNS(udpPayloadSize: 1232))
    let plain = ResponseBuilder.response(to: unpadded, resolution: Resolution(rcode: .noError, answer: [Self.record]))
    #expect(
      try Message.parse(ResponseBuilder.serialize(plain, for: unpadded, via: .quic)).edns?.options.isEmpty == true)
    // Without EDNS in the query there is no OPT to carry padding.
    let noEDNS = Self.query(id: 0)
    let bare = ResponseBuilder.response(to: noEDNS, resolution: Resolution(rcode: .noError))
    #expect(ResponseBuilder.serialize(bare, for: noEDNS, via: .tls) == bare.serialize())
  }

  /// RFC 9250 §4.2.1 and §5.5.2: what makes a DoQ query a protocol error.
  @Test func doqQueriesWithAnIDOrAKeepaliveOptionBreakDoQ() {
    #expect(!DoQQueryService.breaksDoQ(Self.query(id: 0).serialize()))
    #expect(DoQQueryService.breaksDoQ(Self.query(id: 1).serialize()))
    #expect(DoQQueryService.breaksDoQ(Self.query(id: 0x0100).serialize()))
    let keepalive = EDNSOption(code: EDNSOption.keepaliveCode, data: [])
    #expect(
      DoQQueryService.breaksDoQ(Self.query(id: 0, edns: EDNS(udpPayloadSize: 1232, options: [keepalive])).serialize()))
    #expect(!DoQQueryService.breaksDoQ(Self.query(id: 0, edns: EDNS(udpPayloadSize: 1232)).serialize()))
    #expect(!DoQQueryService.breaksDoQ([0, 0, 1]))  // unparsable: left to the processor's FORMERR
  }

  /// OE-4 (RFC 9539 §4.4): the notice is due only when clients beyond loopback have no encrypted listener.
  @Test func cleartextOnlyListenersBeyondLoopbackAreFound() throws {
    let loopback = try ListenerConfiguration(addresses: [
      .init(ipAddress: "127.0.0.1", port: 53), .init(ipAddress: "::1", port: 53),
    ])
    #expect(ListenerConfiguration.cleartextOnlyBeyondLoopback(loopback) == nil)
    let lan = try SocketAddress(ipAddress: "192.0.2.1", port: 53)
    var exposed = loopback
    exposed.addresses.append(lan)
    #expect(ListenerConfiguration.cleartextOnlyBeyondLoopback(exposed) == lan)
    var wildcard = loopback
    wildcard.addresses = [try .init(ipAddress: "0.0.0.0", port: 53)]
    #expect(ListenerConfiguration.cleartextOnlyBeyondLoopback(wildcard) != nil)
    exposed.quicAddresses = [try .init(ipAddress: "192.0.2.1", port: 853)]
    #expect(ListenerConfiguration.cleartextOnlyBeyondLoopback(exposed) == nil)
    exposed.quicAddresses = []
    exposed.tlsAddresses = [try .init(ipAddress: "192.0.2.1", port: 853)]
    #expect(ListenerConfiguration.cleartextOnlyBeyondLoopback(exposed) == nil)
  }
}

import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

/// The packet cache on its own (wire in, wire out) with a hand-driven clock and generation.
@Suite struct PacketCacheTests {
  final class Clock: Sendable {
    let nanos = Atomic<UInt64>(1_000_000_000)
    let generation = Atomic<UInt64>(0)
    func advance(seconds: UInt64) { nanos.add(seconds * 1_000_000_000, ordering: .relaxed) }
  }

  let clock = Clock()

  func cache(capacity: Int = 100) -> PacketCache {
    let clock = self.clock
    return PacketCache(
      capacity: capacity, generation: { clock.generation.load(ordering: .relaxed) },
      now: { clock.nanos.load(ordering: .relaxed) })
  }

  func query(
    id: UInt16, _ name: String, type: RRType = .a, edns: UInt16? = 1232, dnssecOK: Bool = false
  ) throws
    -> Message
  {
    var message = Message()
    message.header.id = id
    message.header.rd = true
    message.questions = [Question(name: try DNSName(name), type: type)]
    if let edns {
      var e = EDNS(udpPayloadSize: edns)
      e.dnssecOK = dnssecOK
      message.edns = e
    }
    return message
  }

  func response(to query: Message, rcode: RCode = .noError, ttl: UInt32 = 300, count: Int = 1)
    throws -> [UInt8]
  {
    let question = try #require(query.questions.first)
    var records: [ResourceRecord] = []
    for i in 0..<count {
      records.append(
        ResourceRecord(
          name: question.name, type: .a, ttl: ttl + UInt32(i),
          rdata: .a(try #require(IPv4Address(octets: [192, 0, 2, UInt8(i % 250)])))))
    }
    let resolution = Resolution(rcode: rcode, answer: records)
    return ResponseBuilder.serialize(
      ResponseBuilder.response(to: query, resolution: resolution), for: query, overTCP: false)
  }

  func learn(_ cache: PacketCache, _ query: Message, _ response: [UInt8]) throws {
    let fast = try #require(FastQuery(ByteBuffer(bytes: query.serialize())))
    cache.insert(
      response: response, for: fast, generation: clock.generation.load(ordering: .relaxed))
  }

  func ask(_ cache: PacketCache, _ query: Message) -> Message? {
    guard
      let (buffer, _) = cache.answer(
        ByteBuffer(bytes: query.serialize()), allocator: ByteBufferAllocator())
    else {
      return nil
    }
    return try? Message.parse(Array(buffer.readableBytesView))
  }

  @Test func replaysWithTheClientsIDAndSpelling() throws {
    let c = cache()
    let first = try query(id: 1, "www.Example.test")
    try learn(c, first, try response(to: first))
    let again = try #require(ask(c, try query(id: 0xBEEF, "WWW.example.TEST")))
    #expect(again.header.id == 0xBEEF)
    #expect(again.questions.first?.name.description == "WWW.example.TEST.")
    #expect(again.answers.count == 1)
    #expect(again.answers.first?.ttl == 300)
    #expect(again.edns != nil)
  }

  @Test func keepsAResponseInStorageOfItsOwnSize() throws {
    let c = cache()
    let q = try query(id: 1, "small.test")
    let wire = try response(to: q)
    #expect(wire.capacity >= 512)  // the serializer's reserve, which 10,000 entries would keep
    try learn(c, q, wire)
    let fast = try #require(FastQuery(ByteBuffer(bytes: q.serialize())))
    let stored = try #require(c.storedCapacity(for: fast))
    #expect(stored >= wire.count && stored < wire.count + 64)
    #expect(ask(c, try query(id: 2, "small.test"))?.answers.count == 1)
  }

  @Test func decrementsTTLsAndExpiresWithTheSmallest() throws {
    let c = cache()
    let q = try query(id: 1, "ttl.test")
    try learn(c, q, try response(to: q, ttl: 10, count: 3))
    clock.advance(seconds: 4)
    let later = try #require(ask(c, q))
    #expect(later.answers.map(\.ttl).sorted() == [6, 7, 8])
    clock.advance(seconds: 6)  // the smallest TTL (10) is used up
    #expect(ask(c, q) == nil)
  }

  @Test func aFlushDropsEverything() throws {
    let c = cache()
    let q = try query(id: 1, "flush.test")
    try learn(c, q, try response(to: q))
    #expect(ask(c, q) != nil)
    clock.generation.add(1, ordering: .relaxed)
    #expect(ask(c, q) == nil)
  }

  @Test func anAnswerThatRacedAFlushIsNotReplayed() throws {
    let c = cache()
    let q = try query(id: 1, "race.test")
    let fast = try #require(FastQuery(ByteBuffer(bytes: q.serialize())))
    let before = c.currentGeneration
    clock.generation.add(1, ordering: .relaxed)  // flushed while resolving
    c.insert(response: try response(to: q), for: fast, generation: before)
    #expect(ask(c, q) == nil)
  }

  /// The fast path lowers and hashes the question's name a word at a time: a long name (past
  /// several words, with a tail) learned in one spelling is replayed for another, and not for a
  /// name that differs in its last octet.
  @Test func findsLongNamesUnderAnySpelling() throws {
    let c = cache()
    let label = String(repeating: "MiXeD", count: 12) + "x"
    let q = try query(id: 1, "\(label).Name-Of-Some.Length.TEST")
    try learn(c, q, try response(to: q))
    #expect(ask(c, try query(id: 2, "\(label.lowercased()).name-of-some.length.test")) != nil)
    #expect(ask(c, try query(id: 3, "\(label.uppercased()).NAME-OF-SOME.LENGTH.TEST")) != nil)
    #expect(ask(c, try query(id: 4, "\(label).Name-Of-Some.Length.TESU")) == nil)
    let longest =
      Array(repeating: String(repeating: "a", count: 63), count: 3).joined(separator: ".") + "."
      + String(repeating: "B", count: 61)
    let big = try query(id: 5, longest)
    try learn(c, big, try response(to: big))
    #expect(ask(c, try query(id: 6, longest.lowercased())) != nil)
  }

  @Test func keysOnTypeEDNSAndDO() throws {
    let c = cache()
    let q = try query(id: 1, "shape.test")
    try learn(c, q, try response(to: q))
    #expect(ask(c, try query(id: 2, "shape.test", type: .aaaa)) == nil)
    #expect(ask(c, try query(id: 2, "shape.test", edns: nil)) == nil)
    #expect(ask(c, try query(id: 2, "shape.test", dnssecOK: true)) == nil)
    #expect(ask(c, try query(id: 2, "shape.test")) != nil)
  }

  @Test func neverSendsMoreThanTheClientTakes() throws {
    let c = cache()
    let big = try query(id: 1, "big.test", edns: 1232)
    let wire = try response(to: big, count: 40)  // about 650 octets
    #expect(wire.count > 512)
    try learn(c, big, wire)
    #expect(ask(c, try query(id: 2, "big.test", edns: 512)) == nil)
    #expect(ask(c, try query(id: 2, "big.test", edns: 1232))?.answers.count == 40)
  }

  @Test func storesOnlyReplayableAnswers() throws {
    let c = cache()
    let q = try query(id: 1, "fail.test")
    try learn(c, q, try response(to: q, rcode: .servFail))
    #expect(ask(c, q) == nil)
    try learn(c, q, try response(to: q, ttl: 0))
    #expect(ask(c, q) == nil)
    #expect(c.count == 0)
  }

  @Test func leavesOddQueriesToTheFullPath() throws {
    var two = try query(id: 1, "a.test")
    two.questions.append(Question(name: try DNSName("b.test"), type: .a))
    #expect(FastQuery(ByteBuffer(bytes: two.serialize())) == nil)
    var withTrailer = try query(id: 1, "a.test", edns: nil).serialize()
    withTrailer.append(0)
    #expect(FastQuery(ByteBuffer(bytes: withTrailer)) == nil)
    var notImp = try query(id: 1, "a.test")
    notImp.header.opcode = 2
    #expect(FastQuery(ByteBuffer(bytes: notImp.serialize())) == nil)
    #expect(FastQuery(ByteBuffer(bytes: [UInt8](repeating: 0, count: 11))) == nil)
    var axfr = try query(id: 1, "a.test", type: .axfr)
    axfr.edns = nil
    #expect(FastQuery(ByteBuffer(bytes: axfr.serialize())) == nil)
  }

  @Test func boundedByCapacity() throws {
    let c = cache(capacity: 3)
    for i in 0..<10 {
      let q = try query(id: 1, "n\(i).test")
      try learn(c, q, try response(to: q))
    }
    #expect(c.count == 3)
    #expect(ask(c, try query(id: 1, "n9.test")) != nil)
    #expect(ask(c, try query(id: 1, "n0.test")) == nil)
  }
}

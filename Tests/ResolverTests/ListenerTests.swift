import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

/// Answers every question with one A record, 192.0.2.1.
private struct FixedResolver: QueryResolving {
  static let address = IPv4Address(octets: [192, 0, 2, 1])
  func resolve(_ question: Question) async -> Resolution {
    guard let address = Self.address else { return Resolution(rcode: .servFail) }
    return Resolution(
      rcode: .noError, answer: [ResourceRecord(name: question.name, type: .a, ttl: 300, rdata: .a(address))])
  }
}

/// Answers like `FixedResolver` once the test opens it (or after 20 s): a resolution that holds
/// its slot for as long as the test needs, however slowly the test itself gets scheduled.
private final class GatedResolver: QueryResolving, Sendable {
  let isOpen = Mutex(false)
  /// Resolutions that have begun (reached the resolver).
  let begun = Mutex(0)
  func open() { isOpen.withLock { $0 = true } }
  func resolve(_ question: Question) async -> Resolution {
    begun.withLock { $0 += 1 }
    for _ in 0..<2000 where !isOpen.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(10)) }
    return await FixedResolver().resolve(question)
  }
}

/// `GatedResolver` with `background` resolutions going on after their clients were answered.
private final class GatedBusyResolver: QueryResolving, Sendable {
  let background: Int
  let gate = GatedResolver()
  init(background: Int) { self.background = background }
  var backgroundResolutions: Int { background }
  func resolve(_ question: Question) async -> Resolution { await gate.resolve(question) }
}

/// `GatedResolver` that reports every question as being resolved while one resolution runs, as
/// `RecursiveResolver` does for an identical question: later queries join it.
private final class GatedJoiningResolver: QueryResolving, Sendable {
  let gate = GatedResolver()
  let running = Mutex(0)
  func isResolving(_ question: Question) -> Bool { running.withLock { $0 > 0 } }
  func resolve(_ question: Question) async -> Resolution {
    running.withLock { $0 += 1 }
    defer { running.withLock { $0 -= 1 } }
    return await gate.resolve(question)
  }
}

/// Like `FixedResolver`, and counts the questions that reached it.
private final class CountingResolver: QueryResolving, Sendable {
  let calls = Mutex(0)
  func resolve(_ question: Question) async -> Resolution {
    calls.withLock { $0 += 1 }
    return await FixedResolver().resolve(question)
  }
}

/// Waits (up to 10 s) until `gated` has begun `count` resolutions. Resolutions run on the shared
/// upstream engine thread, which a test running beside can keep busy past a short answer deadline:
/// under TSan in CI the overdue SERVFAIL once went before the resolution had begun at all.
private func waitUntil(_ gated: GatedResolver, hasBegun count: Int) async throws {
  let giveUp = ContinuousClock.now + .seconds(10)
  while gated.begun.withLock({ $0 }) < count, ContinuousClock.now < giveUp {
    try await Task.sleep(for: .milliseconds(5))
  }
}

private enum ListenerTestError: Error {
  case timeout
  case noReply
  case noAddress
}

/// Real sockets on 127.0.0.1. The query/answer tests need the wire parser and writer (Message.parse/serialize).
@Suite(.serialized) struct ListenerTests {
  let group = MultiThreadedEventLoopGroup.singleton

  // MARK: Queries (need the wire format)

  @Test func answersOverUDP() async throws {
    try await withListener { server, _ in
      let reply = try await udpExchange(query(id: 0x4242, "www.Example.com"), with: server)
      let response = try Message.parse(reply)
      #expect(response.header.id == 0x4242)
      #expect(response.header.qr && response.header.ra)
      #expect(response.rcode == .noError)
      #expect(response.questions.first?.name.description == "www.Example.com.")
      #expect(response.answers.map(\.rdata) == [FixedResolver.address.map { RData.a($0) }].compactMap { $0 })
    }
  }

  @Test func answersPipelinedQueriesOverTCP() async throws {
    try await withListener { server, listener in
      let replies = try await tcpExchange([query(id: 1, "one.example"), query(id: 2, "two.example")], with: server)
      let responses = try replies.map { try Message.parse($0) }
      #expect(Set(responses.map(\.header.id)) == [1, 2])
      for response in responses {
        #expect(response.rcode == .noError)
        #expect(response.answers.count == 1)
        let expected = response.header.id == 1 ? "one.example." : "two.example."
        #expect(response.answers.first?.name.description == expected)
      }
      #expect(listener.statistics.tcpQueries == 2)
    }
  }

  @Test func refusesClientsOutsideAllowedNetworks() async throws {
    try await withListener(allowed: [try CIDR("10.0.0.0/8")]) { server, listener in
      let reply = try await udpExchange(query(id: 7, "www.example.com"), with: server)
      let response = try Message.parse(reply)
      #expect(response.header.id == 7)
      #expect(response.rcode == .refused)
      #expect(!response.header.ra, "recursion is not available to a client outside --allow")
      #expect(response.answers.isEmpty)
      #expect(listener.statistics.notAllowed == 1)
      #expect(listener.statistics.refused == 1)
    }
  }

  @Test func answersGarbageWithFormErr() async throws {
    try await withListener { server, listener in
      // A header claiming one question, followed by a dangling compression pointer.
      let garbage: [UInt8] = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0]
      let response = try Message.parse(try await udpExchange(garbage, with: server))
      #expect(response.header.id == 0x1234)
      #expect(response.rcode == .formErr)
      #expect(response.questions.isEmpty)
      #expect(listener.statistics.formErrors == 1)
    }
  }

  @Test func repeatedQuestionsComeFromThePacketCacheAndAreCounted() async throws {
    let resolver = CountingResolver()
    let monitor = ResolverMonitor()
    let cache = DNSCache()
    let packets = PacketCache(capacity: 100, invalidatedBy: cache)
    try await withListener(resolver: resolver, monitor: monitor, packetCache: packets) {
      server, listener in
      _ = try await udpExchange(query(id: 1, "www.example.com"), with: server)
      // The answer is stored after it is sent.
      for _ in 0..<500 where packets.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
      let reply = try Message.parse(
        try await udpExchange(query(id: 2, "WWW.example.COM"), with: server))
      #expect(reply.header.id == 2)
      #expect(reply.questions.first?.name.description == "WWW.example.COM.")
      #expect(reply.answers.count == 1)
      #expect(resolver.calls.withLock { $0 } == 1)
      #expect(listener.statistics.queries == 2)
      let seen = monitor.snapshot()
      #expect(seen.clientQueries == 2)
      #expect(seen.cacheHits == 1)
      #expect(seen.queries.first?.name == "WWW.example.COM.")
      #expect(seen.queries.first?.cacheHit == true)
      #expect(seen.queries.first?.client == "127.0.0.1")
      cache.flushAll()  // `sotto ctl flush`: the next answer is resolved again
      _ = try await udpExchange(query(id: 3, "www.example.com"), with: server)
      #expect(resolver.calls.withLock { $0 } == 2)
    }
  }

  /// TCP (and DoT) clients get cached answers from the packet cache too, each with its own ID
  /// and spelling, pipelined in one write; a TCP answer is stored for UDP clients as well.
  @Test func tcpQueriesAreAnsweredFromAndFillThePacketCache() async throws {
    let resolver = CountingResolver()
    let packets = PacketCache(capacity: 100, invalidatedBy: DNSCache())
    try await withListener(resolver: resolver, packetCache: packets) { server, listener in
      _ = try await tcpExchange([query(id: 1, "tcp.example.com")], with: server)
      // The answer is stored after it is sent.
      for _ in 0..<500 where packets.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
      #expect(packets.count == 1, "a TCP answer was not stored")
      let replies = try await tcpExchange(
        [query(id: 2, "TCP.example.com"), query(id: 3, "tcp.EXAMPLE.com")], with: server
      ).map { try Message.parse($0) }
      #expect(replies.map(\.header.id) == [2, 3])
      #expect(replies.map { $0.questions.first?.name.description } == ["TCP.example.com.", "tcp.EXAMPLE.com."])
      #expect(replies.allSatisfy { $0.answers.count == 1 && !$0.header.tc })
      let udp = try Message.parse(try await udpExchange(query(id: 4, "tcp.example.com"), with: server))
      #expect(udp.header.id == 4 && udp.answers.count == 1)
      #expect(resolver.calls.withLock { $0 } == 1)
      #expect(listener.statistics.queries == 4 && listener.statistics.tcpQueries == 3)
    }
  }

  @Test func thePacketCacheDoesNotAnswerClientsOutsideAllowedNetworks() async throws {
    let resolver = CountingResolver()
    let packets = PacketCache(capacity: 100, invalidatedBy: DNSCache())
    try await withListener(
      resolver: resolver, allowed: [try CIDR("10.0.0.0/8")], packetCache: packets
    ) {
      server, listener in
      for id in [UInt16(1), 2] {
        let reply = try Message.parse(
          try await udpExchange(query(id: id, "www.example.com"), with: server))
        #expect(reply.rcode == .refused)
      }
      #expect(resolver.calls.withLock { $0 } == 0)
      #expect(listener.statistics.notAllowed == 2)
      #expect(packets.count == 0)
    }
  }

  // MARK: The UDP socket loop (serves UDP whenever the packet cache is on)

  @Test func rateLimitingAlsoLimitsPacketCacheHits() async throws {
    let packets = PacketCache(capacity: 100, invalidatedBy: DNSCache())
    // One query per 100 s (burst 1): the second is over the rate however slow the machine is
    // (at 1 per second a loaded CI machine refilled the token between the two queries).
    try await withListener(rate: 0.01, packetCache: packets) { server, listener in
      let first = try Message.parse(try await udpExchange(query(id: 1, "a.example"), with: server))
      #expect(first.rcode == .noError)
      // The answer is stored after it is sent.
      for _ in 0..<500 where packets.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
      #expect(packets.count == 1)
      await #expect(throws: ListenerTestError.timeout) {
        _ = try await udpExchange(query(id: 2, "a.example"), with: server, seconds: 1)
      }
      #expect(listener.statistics.rateLimited == 1)
    }
  }

  @Test func answersABurstOfCachedQueriesEachWithItsID() async throws {
    let resolver = CountingResolver()
    let packets = PacketCache(capacity: 100, invalidatedBy: DNSCache())
    try await withListener(resolver: resolver, packetCache: packets) { server, listener in
      _ = try await udpExchange(query(id: 1, "www.example.com"), with: server)
      // The answer is stored after it is sent.
      for _ in 0..<500 where packets.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
      // 100 queries sent at once: several recvmmsg/sendmmsg batches of the loop.
      let ids = (UInt16(100)..<200).map { $0 }
      let replies = try await udpBurst(ids.map { try query(id: $0, "www.example.com") }, with: server)
      let parsed = try replies.map { try Message.parse($0) }
      #expect(Set(parsed.map(\.header.id)) == Set(ids))
      #expect(parsed.allSatisfy { $0.answers.count == 1 })
      #expect(resolver.calls.withLock { $0 } == 1)
      #expect(listener.statistics.queries == 101)
    }
  }

  @Test func servesIPv6ClientsFromThePacketCache() async throws {
    let monitor = ResolverMonitor()
    let packets = PacketCache(capacity: 100, invalidatedBy: DNSCache())
    try await withListener(host: "::1", monitor: monitor, packetCache: packets) { server, _ in
      _ = try await udpExchange(query(id: 1, "v6.example"), with: server)
      // The answer is stored after it is sent.
      for _ in 0..<500 where packets.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
      let reply = try Message.parse(try await udpExchange(query(id: 2, "v6.example"), with: server))
      #expect(reply.header.id == 2 && reply.answers.count == 1)
      let seen = monitor.snapshot()
      #expect(seen.cacheHits == 1)
      #expect(seen.queries.first?.client == "::1")
    }
  }

  #if canImport(Glibc)
    /// A query whose source is the loopback network's broadcast address gets an answer the kernel
    /// refuses to send (EACCES). Without a packet cache the listener used NIO's channel, which
    /// closes itself on that error: one such datagram ended UDP service. Now it is counted and the
    /// listener answers the next client. Needs root for the raw socket that forges the source.
    @Test func aRefusedAnswerIsCountedAndServingGoesOn() async throws {
      guard getuid() == 0 else {
        let message = "root is needed to send a datagram from 127.255.255.255 (raw socket)"
        if ProcessInfo.processInfo.environment["CI"] == "true" {
          Issue.record(Comment(rawValue: message))
        } else {
          print("skipped: \(message)")
        }
        return
      }
      try await withListener { server, listener in
        let port = try #require(server.port)
        for i in 0..<3 {
          try sendSpoofedUDP(
            from: "127.255.255.255", port: UInt16(41000 + i), to: "127.0.0.1", port: UInt16(port),
            payload: try query(id: UInt16(i), "spoofed\(i).example"))
        }
        var failures = 0
        for _ in 0..<250 where failures < 3 {
          try await Task.sleep(for: .milliseconds(20))
          failures = listener.statistics.sendFailures
        }
        #expect(failures == 3)
        let reply = try await udpExchange(query(id: 0x0b0b, "after.example"), with: server)
        #expect(try Message.parse(reply).header.id == 0x0b0b, "the listener stopped answering")
      }
    }
  #endif

  @Test func stoppingReleasesTheUDPPort() async throws {
    let packets = PacketCache(capacity: 100, invalidatedBy: DNSCache())
    var port = 0
    try await withListener(packetCache: packets) { server, _ in
      port = server.port ?? 0
      _ = try await udpExchange(query(id: 1, "a.example"), with: server)
    }
    // The listener has stopped: the port can be bound again at once.
    let again = try await DatagramBootstrap(group: group)
      .bindClosingOnFailure(to: try SocketAddress(ipAddress: "127.0.0.1", port: port))
    try await again.close()
  }

  // MARK: Connection handling (no wire format needed)

  @Test func closesIdleTCPConnections() async throws {
    try await withListener(idle: .milliseconds(200)) { server, _ in
      let closed = try await tcpWaitForClose(server)
      #expect(closed)
    }
  }

  @Test func closesConnectionsOverTheLimit() async throws {
    try await withListener(maxTCP: 1) { server, listener in
      let first = try await connect(server)
      // The second must come once the first is admitted, however slowly (sanitizers) that goes.
      for _ in 0..<500 where listener.openTCPConnections < 1 { try await Task.sleep(for: .milliseconds(10)) }
      #expect(listener.openTCPConnections == 1)
      let closed = try await tcpWaitForClose(server)
      #expect(closed)
      #expect(listener.statistics.tcpConnectionsRejected == 1)
      try await first.channel.close()
    }
  }

  @Test func closesATCPConnectionAfterItsQueryLimit() async throws {
    try await withListener(tcpQueryLimit: 2) { server, listener in
      // Three queries in one write: two are answered, the third is ignored and the connection closes.
      let channel = try await connect(server)
      let replies = try await withTimeout {
        try await channel.executeThenClose { inbound, outbound in
          var out = ByteBuffer()
          for id in 1...3 {
            let q = try query(id: UInt16(id), "q\(id).example")
            out.writeInteger(UInt16(q.count))
            out.writeBytes(q)
          }
          try await outbound.write(out)
          var received = 0
          for try await chunk in inbound { received += chunk.readableBytes }
          return received  // the loop ends when the server closes
        }
      }
      #expect(replies > 0)
      #expect(listener.statistics.tcpQueries == 2)
      #expect(listener.statistics.tcpQueryLimitClosed == 1)
    }
  }

  @Test func dropsQueriesOverTheClientRate() async throws {
    // One query per 100 s (burst 1), so no token comes back between the two queries.
    try await withListener(rate: 0.01) { server, listener in
      let first = try Message.parse(try await udpExchange(query(id: 1, "a.example"), with: server))
      #expect(first.rcode == .noError)
      await #expect(throws: ListenerTestError.timeout) {
        _ = try await udpExchange(query(id: 2, "b.example"), with: server, seconds: 1)
      }
      #expect(listener.statistics.rateLimited == 1)
    }
  }

  #if canImport(Glibc)
    @Test func aQueryWhoseResolutionOverrunsGetsServfailOnceAndTheLateAnswerIsDropped() async throws {
      // The resolution hangs until the gate opens; the listener's watch answers for it after
      // 0.3 s. When the resolution ends later, its NOERROR must not reach the client as well:
      // the next datagram on the same socket is the answer to the next query.
      let gated = GatedResolver()
      try await withListener(resolver: gated, answerDeadline: 0.3) { server, listener in
        defer { gated.open() }
        let client = try BlockingUDPClient(to: server)
        defer { client.close() }
        try client.send(query(id: 7, "stuck.example"))
        let overdue = try Message.parse(try client.receive(seconds: 10))
        #expect(overdue.header.id == 7 && overdue.rcode == .servFail)
        #expect(listener.statistics.resolutionsOverdue == 1)
        try await waitUntil(gated, hasBegun: 1)
        #expect(listener.statistics.resolutionsInFlight == 1)  // still holds its slot
        gated.open()
        let giveUp = ContinuousClock.now + .seconds(10)
        while listener.statistics.resolutionsInFlight > 0, ContinuousClock.now < giveUp {
          try await Task.sleep(for: .milliseconds(5))
        }
        #expect(listener.statistics.resolutionsInFlight == 0)
        try client.send(query(id: 8, "next.example"))
        let next = try Message.parse(try client.receive(seconds: 10))
        #expect(next.header.id == 8 && next.rcode == .noError)
        #expect(listener.statistics.resolutionsOverdue == 1)
      }
    }
  #endif

  @Test func aTCPQueryWhoseResolutionOverrunsGetsServfailOnceAndTheLateAnswerIsDropped() async throws {
    // As the UDP test above, on one TCP connection: the next frame after the overdue SERVFAIL is
    // the answer to the next query, not the first query's late NOERROR.
    let gated = GatedResolver()
    try await withListener(resolver: gated, answerDeadline: 0.3) { server, listener in
      defer { gated.open() }
      let channel = try await connect(server)
      let first = try query(id: 7, "stuck.example")
      let second = try query(id: 8, "next.example")
      let (overdue, next, overdueCount, inFlight) = try await withTimeout(seconds: 20) {
        try await channel.executeThenClose { inbound, outbound in
          var frames = inbound.makeAsyncIterator()
          var pending = ByteBuffer()
          func nextFrame() async throws -> Message {
            while true {
              if let length = pending.getInteger(at: pending.readerIndex, as: UInt16.self),
                pending.readableBytes >= 2 + Int(length)
              {
                pending.moveReaderIndex(forwardBy: 2)
                return try Message.parse(pending.readBytes(length: Int(length)) ?? [])
              }
              guard var chunk = try await frames.next() else { throw ListenerTestError.noReply }
              pending.writeBuffer(&chunk)
            }
          }
          try await outbound.write(TCPFrameDecoder.frame(first, allocator: ByteBufferAllocator()))
          let overdue = try await nextFrame()
          let overdueCount = listener.statistics.resolutionsOverdue
          try await waitUntil(gated, hasBegun: 1)
          let inFlight = listener.statistics.resolutionsInFlight  // still holds its slot
          gated.open()
          while listener.statistics.resolutionsInFlight > 0 { try await Task.sleep(for: .milliseconds(5)) }
          try await outbound.write(TCPFrameDecoder.frame(second, allocator: ByteBufferAllocator()))
          return (overdue, try await nextFrame(), overdueCount, inFlight)
        }
      }
      #expect(overdue.header.id == 7 && overdue.rcode == .servFail)
      #expect(overdueCount == 1 && inFlight == 1)
      #expect(next.header.id == 8 && next.rcode == .noError)
      #expect(listener.statistics.resolutionsOverdue == 1)
    }
  }

  @Test func answersServfailOverTheResolutionCap() async throws {
    let gated = GatedResolver()
    try await withListener(resolver: gated, maxResolutions: 1) { server, listener in
      // The first query holds the only slot until the gate opens; the second, sent once the
      // first is in flight (polled: a fixed sleep lost the race on a loaded machine), is shed at
      // once. (A fixed 1 s hold could also end before the second query went out.)
      defer { gated.open() }
      async let slow = udpExchange(query(id: 1, "slow.example"), with: server)
      let giveUp = ContinuousClock.now + .seconds(5)
      while listener.statistics.resolutionsInFlight == 0, ContinuousClock.now < giveUp {
        try await Task.sleep(for: .milliseconds(5))
      }
      #expect(listener.statistics.resolutionsInFlight == 1)
      let shed = try Message.parse(try await udpExchange(query(id: 2, "fast.example"), with: server))
      #expect(shed.rcode == .servFail && shed.header.id == 2)
      gated.open()
      #expect(try Message.parse(try await slow).rcode == .noError)
      #expect(listener.statistics.resolutionsShed == 1)
      #expect(listener.statistics.resolutionsInFlight == 0)
    }
  }

  @Test func queriesJoiningARunningResolutionTakeNoSlotUpToEightPerSlot() async throws {
    let resolver = GatedJoiningResolver()
    try await withListener(resolver: resolver, maxResolutions: 1) { server, listener in
      defer { resolver.gate.open() }
      async let first = udpExchange(query(id: 1, "same.example"), with: server)
      let giveUp = ContinuousClock.now + .seconds(5)
      while listener.statistics.resolutionsInFlight == 0, ContinuousClock.now < giveUp {
        try await Task.sleep(for: .milliseconds(5))
      }
      // Eight join the running resolution without a slot; the ninth is one too many and finds
      // the only slot taken: shed.
      let more = try (2...10).map { try query(id: UInt16($0), "same.example") }
      async let joined = udpBurst(more, with: server)
      while listener.statistics.resolutionsShed == 0, ContinuousClock.now < giveUp {
        try await Task.sleep(for: .milliseconds(5))
      }
      #expect(listener.statistics.resolutionsShed == 1 && listener.statistics.resolutionsInFlight == 1)
      resolver.gate.open()
      let rcodes = try await joined.map { try Message.parse($0).rcode }
      #expect(rcodes.filter { $0 == .noError }.count == 8 && rcodes.filter { $0 == .servFail }.count == 1)
      #expect(try Message.parse(try await first).rcode == .noError)
    }
  }

  @Test func backgroundResolutionsCountAgainstTheResolutionCapUpToHalfOfIt() async throws {
    // Four slots; `background` refreshes go on after stale answers; two client questions are held
    // in flight, and a third one is shed or answered.
    func third(background: Int) async throws -> (RCode, Int) {
      let resolver = GatedBusyResolver(background: background)
      var outcome: (RCode, Int) = (.refused, -1)
      try await withListener(resolver: resolver, maxResolutions: 4) { server, listener in
        defer { resolver.gate.open() }
        async let first = udpExchange(query(id: 1, "a.example"), with: server)
        async let second = udpExchange(query(id: 2, "b.example"), with: server)
        let giveUp = ContinuousClock.now + .seconds(10)
        while listener.statistics.resolutionsInFlight < 2, ContinuousClock.now < giveUp {
          try await Task.sleep(for: .milliseconds(5))
        }
        #expect(listener.statistics.resolutionsInFlight == 2)
        async let third = udpExchange(query(id: 3, "c.example"), with: server)
        // The shed answer comes at once; an admitted one waits for the gate.
        while listener.statistics.resolutionsShed == 0, listener.statistics.resolutionsInFlight < 3,
          ContinuousClock.now < giveUp
        {
          try await Task.sleep(for: .milliseconds(5))
        }
        resolver.gate.open()
        let answer = try Message.parse(try await third)
        #expect(answer.header.id == 3)
        _ = try await (first, second)
        outcome = (answer.rcode, listener.statistics.resolutionsShed)
      }
      return outcome
    }
    // Two refreshes hold two slots: the third client question is shed.
    #expect(try await third(background: 2) == (.servFail, 1))
    // One holds one: the third is answered.
    #expect(try await third(background: 1) == (.noError, 0))
    // Ten would hold all four, but refreshes get half the cap at most: still shed, not starved.
    #expect(try await third(background: 10) == (.servFail, 1))
  }

  // MARK: Helpers

  private func withListener(
    host: String = "127.0.0.1",
    resolver: any QueryResolving = FixedResolver(), allowed: [CIDR] = CIDR.loopback, idle: TimeAmount = .seconds(10),
    maxTCP: Int = 256, tcpQueryLimit: Int = 1000, maxResolutions: Int = 1024, rate: Double = 0,
    monitor: ResolverMonitor? = nil, packetCache: PacketCache? = nil, answerDeadline: Double = 5,
    _ body: (SocketAddress, Listener) async throws -> Void
  ) async throws {
    let configuration = ListenerConfiguration(
      addresses: [try SocketAddress(ipAddress: host, port: 0)], allowed: allowed, tcpIdleTimeout: idle,
      maxTCPConnections: maxTCP, tcpQueriesPerConnection: tcpQueryLimit, maxResolutions: maxResolutions,
      clientRateLimit: rate, answerDeadline: answerDeadline)
    let listener = Listener(
      resolver: resolver, configuration: configuration, group: group, logger: Logger(label: "ListenerTests"),
      monitor: monitor, packetCache: packetCache)
    let bound = try await listener.start()
    guard let server = bound.first, server.port != 0 else {
      await listener.stop()
      throw ListenerTestError.noAddress
    }
    do {
      try await body(server, listener)
    } catch {
      await listener.stop()
      throw error
    }
    await listener.stop()
  }

  private func query(id: UInt16, _ name: String) throws -> [UInt8] {
    var message = Message()
    message.header.id = id
    message.header.rd = true
    message.questions = [Question(name: try DNSName(name), type: .a)]
    message.edns = EDNS(udpPayloadSize: 1232)
    return message.serialize()
  }

  private func udpExchange(_ query: [UInt8], with server: SocketAddress, seconds: Int = 5) async throws -> [UInt8] {
    guard let reply = try await udpBurst([query], with: server, seconds: seconds).first else {
      throw ListenerTestError.noReply
    }
    return reply
  }

  /// Sends `queries` back to back from one socket and returns the first reply to each.
  private func udpBurst(_ queries: [[UInt8]], with server: SocketAddress, seconds: Int = 5) async throws
    -> [[UInt8]]
  {
    let host = server.protocol == .inet6 ? "::1" : "127.0.0.1"
    let channel = try await DatagramBootstrap(group: group).bind(host: host, port: 0) { channel in
      channel.eventLoop.makeCompletedFuture {
        try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(
          wrappingChannelSynchronously: channel)
      }
    }
    return try await withTimeout(seconds: seconds) {
      try await channel.executeThenClose { inbound, outbound in
        for query in queries {
          try await outbound.write(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: query)))
        }
        var replies: [[UInt8]] = []
        for try await envelope in inbound {
          replies.append(Array(envelope.data.readableBytesView))
          if replies.count == queries.count { return replies }
        }
        throw ListenerTestError.noReply
      }
    }
  }

  private func connect(_ server: SocketAddress) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
    try await ClientBootstrap(group: group).connect(to: server) { channel in
      channel.eventLoop.makeCompletedFuture {
        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
      }
    }
  }

  /// Sends all queries framed in one write and returns one framed reply per query.
  private func tcpExchange(_ queries: [[UInt8]], with server: SocketAddress) async throws -> [[UInt8]] {
    let channel = try await connect(server)
    return try await withTimeout {
      try await channel.executeThenClose { inbound, outbound in
        var out = ByteBuffer()
        for query in queries {
          out.writeInteger(UInt16(query.count))
          out.writeBytes(query)
        }
        try await outbound.write(out)
        var pending = ByteBuffer()
        var replies: [[UInt8]] = []
        for try await var chunk in inbound {
          pending.writeBuffer(&chunk)
          while let length = pending.getInteger(at: pending.readerIndex, as: UInt16.self),
            pending.readableBytes >= 2 + Int(length)
          {
            pending.moveReaderIndex(forwardBy: 2)
            replies.append(pending.readBytes(length: Int(length)) ?? [])
          }
          if replies.count == queries.count { return replies }
        }
        throw ListenerTestError.noReply
      }
    }
  }

  /// Connects and waits (up to 5 s) for the server to close the connection without sending anything.
  private func tcpWaitForClose(_ server: SocketAddress) async throws -> Bool {
    let channel = try await connect(server)
    return try await withTimeout {
      try await channel.executeThenClose { inbound, _ in
        for try await _ in inbound { return false }
        return true
      }
    }
  }

  private func withTimeout<T: Sendable>(
    seconds: Int = 5, _ body: @escaping @Sendable () async throws -> T
  ) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { tasks in
      tasks.addTask { try await body() }
      tasks.addTask {
        try await Task.sleep(for: .seconds(seconds))
        throw ListenerTestError.timeout
      }
      defer { tasks.cancelAll() }
      guard let first = try await tasks.next() else { throw ListenerTestError.timeout }
      return first
    }
  }
}

#if canImport(Glibc)
  import Glibc

  /// One UDP socket that sends and receives with blocking calls (a receive timeout), so that a
  /// test reads every datagram that reaches it, in order.
  private struct BlockingUDPClient {
    let fd: Int32
    let server: SocketAddress

    init(to server: SocketAddress) throws {
      let family = server.protocol == .inet6 ? AF_INET6 : AF_INET
      fd = socket(family, Int32(SOCK_DGRAM.rawValue), 0)
      guard fd >= 0 else { throw ListenerTestError.noAddress }
      self.server = server
    }

    func send(_ bytes: [UInt8]) throws {
      let sent = bytes.withUnsafeBytes { b in
        server.withSockAddr { sa, len in sendto(fd, b.baseAddress, b.count, 0, sa, socklen_t(len)) }
      }
      guard sent == bytes.count else { throw ListenerTestError.noReply }
    }

    /// The next datagram, or `.timeout` after `seconds`.
    func receive(seconds: Int) throws -> [UInt8] {
      var limit = timeval(tv_sec: seconds, tv_usec: 0)
      _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
      var buffer = [UInt8](repeating: 0, count: 4096)
      let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      guard n > 0 else { throw ListenerTestError.timeout }
      return Array(buffer.prefix(n))
    }

    func close() { _ = Glibc.close(fd) }
  }
#endif

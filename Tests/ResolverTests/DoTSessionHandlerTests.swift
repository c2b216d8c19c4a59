import NIOCore
import NIOEmbedded
import Testing

@testable import Resolver

/// The DNS side of a DoT session without TLS: an EmbeddedChannel with the framing decoder and the
/// session handler, the handshake completion injected as the TLS handler would fire it.
@Suite struct DoTSessionHandlerTests {
  /// A class so that `deinit` can finish the channel: an unfinished EmbeddedChannel keeps its
  /// pipeline, handlers and scheduled timers alive in a cycle (LeakSanitizer reported it).
  private final class Harness {
    let channel = EmbeddedChannel()
    let handler: DoTSessionHandler
    let closes = DoTRecorder<EncryptedFailure>()
    let counters = EncryptedReplyCounters()

    /// With `quickAcks`, QuickAckHandler sits in front (as in DoTConnection) and records each arming.
    init(idleTimeout: TimeAmount = .seconds(30), quickAcks: DoTRecorder<Bool>? = nil) throws {
      let closes = self.closes
      let handler = DoTSessionHandler(
        handshakePromise: channel.embeddedEventLoop.makePromise(), handshakeTimeout: .seconds(5),
        idleTimeout: idleTimeout,
        status: DoTConnectionStatus(), time: SystemTimeSource(), counters: counters, onClose: { closes.append($0) })
      self.handler = handler
      if let quickAcks {
        try channel.pipeline.syncOperations.addHandler(
          QuickAckHandler(awaitingAnswers: { handler.awaitingAnswers }, arm: { _ in quickAcks.append(true) }))
      }
      try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedMessageDecoder()))
      try channel.pipeline.syncOperations.addHandler(handler)
      try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 853)).wait()
      let info = TLSHandshakeInfo(
        tlsVersion: "TLSv1.3", alpn: "dot", resumed: false, certificate: CertificateCheck(problems: []), handshakeMs: 1)
      channel.pipeline.fireUserInboundEventTriggered(DoTHandshakeCompleted(info: info))
    }

    deinit { _ = try? channel.finish(acceptAlreadyClosed: true) }

    /// The query the handler wrote, unframed and parsed.
    func sentQuery() throws -> (wire: [UInt8], message: Message) {
      let frame = try #require(try channel.readOutbound(as: ByteBuffer.self))
      let bytes = Array(frame.readableBytesView)
      try #require(bytes.count >= 2)
      let length = Int(bytes[0]) << 8 | Int(bytes[1])
      try #require(bytes.count == length + 2)
      let wire = Array(bytes[2...])
      return (wire, try Message.parse(wire))
    }

    func reply(to query: Message, id: UInt16? = nil, name: String? = nil, tc: Bool = false) throws {
      var response = query
      response.header.qr = true
      response.header.tc = tc
      if let id { response.header.id = id }
      if let name { response.questions = [Question(name: try DNSName(name), type: .a)] }
      response.edns = nil
      var buffer = channel.allocator.buffer(capacity: 512)
      buffer.writeLengthPrefixed(response.serialize())
      try channel.writeInbound(buffer)
    }
  }

  @Test func responsesAreMatchedByIDAndQuestionAndGetTheCallersID() throws {
    let h = try Harness()
    let future = h.handler.send(try dotQuery("www.dot.test.", .a, id: 0xBEEF), timeout: .seconds(5))
    let (wire, sent) = try h.sentQuery()
    #expect(wire.count % 128 == 0, "padded (T-40)")
    // Wrong ID, then the right ID with another question: both dropped (T-13).
    try h.reply(to: sent, id: sent.header.id &+ 1)
    try h.reply(to: sent, name: "other.dot.test.")
    let completed = DoTRecorder<Bool>()
    future.whenComplete { _ in completed.append(true) }
    h.channel.embeddedEventLoop.run()
    #expect(completed.all.isEmpty, "mismatched responses are dropped")
    try h.reply(to: sent)
    let response = try future.wait()
    #expect(response.header.id == 0xBEEF)
    #expect(response.header.qr)
  }

  /// Issue 8 (hostile `dotformerr`): mismatched replies are counted as mismatched, an unparsable
  /// reply with the query's ID (compression pointer to itself) fails the query and is counted as malformed.
  @Test func mismatchedAndMalformedRepliesAreCounted() throws {
    let h = try Harness()
    let future = h.handler.send(try dotQuery("www.dot.test.", .a), timeout: .seconds(5))
    let sent = try h.sentQuery().message
    try h.reply(to: sent, id: sent.header.id &+ 1)
    try h.reply(to: sent, name: "other.dot.test.")
    #expect(h.counters.mismatchedDoT == 2 && h.counters.malformedDoT == 0)
    // Header (ID, QR, 1 question, 1 answer), the question, then an answer whose owner points at itself.
    var wire: [UInt8] = [UInt8(sent.header.id >> 8), UInt8(sent.header.id & 0xFF), 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    let question: [UInt8] =
      [3] + Array("www".utf8) + [3] + Array("dot".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
    wire += question
    let owner = 12 + question.count
    wire += [0xC0 | UInt8(owner >> 8), UInt8(owner & 0xFF), 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 66]
    var buffer = h.channel.allocator.buffer(capacity: 128)
    buffer.writeLengthPrefixed(wire)
    try h.channel.writeInbound(buffer)
    #expect(throws: (any Error).self) { try future.wait() }
    #expect(h.counters.malformedDoT == 1 && h.counters.mismatchedDoT == 2)
  }

  /// TCP_QUICKACK is re-armed after a read only while an answer is still outstanding: a server that
  /// holds an answer behind Nagle gets its ACK at once, and after the last answer the ACK rides on
  /// the next query instead of a bare segment.
  @Test func quickAckIsArmedOnlyWhileAnAnswerIsOutstanding() throws {
    let quickAcks = DoTRecorder<Bool>()
    let h = try Harness(quickAcks: quickAcks)
    #expect(quickAcks.all.count == 1, "armed when the connection opens")
    let first = h.handler.send(try dotQuery("a.dot.test.", .a, id: 1), timeout: .seconds(5))
    let second = h.handler.send(try dotQuery("b.dot.test.", .a, id: 2), timeout: .seconds(5))
    let (q1, q2) = (try h.sentQuery().message, try h.sentQuery().message)
    try h.reply(to: q1)
    #expect(quickAcks.all.count == 2, "the second answer is still outstanding")
    var response = q2
    response.header.qr = true
    response.edns = nil
    var framed = h.channel.allocator.buffer(capacity: 512)
    framed.writeLengthPrefixed(response.serialize())
    let head = framed.readSlice(length: 5)
    try h.channel.writeInbound(try #require(head))
    #expect(quickAcks.all.count == 3, "half an answer: still outstanding")
    try h.channel.writeInbound(framed)
    #expect(quickAcks.all.count == 3, "every query answered: no quick ACK")
    #expect(try first.wait().header.id == 1)
    #expect(try second.wait().header.id == 2)
  }

  @Test func truncatedResponseFailsTheQuery() throws {
    let h = try Harness()
    let future = h.handler.send(try dotQuery("www.dot.test.", .a), timeout: .seconds(5))
    try h.reply(to: try h.sentQuery().message, tc: true)
    #expect(throws: TransportError.truncated) { try future.wait() }
  }

  @Test func queryTimesOut() throws {
    let h = try Harness()
    let future = h.handler.send(try dotQuery("www.dot.test.", .a), timeout: .seconds(2))
    h.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
    #expect(throws: TransportError.timeout) { try future.wait() }
  }

  @Test func eachQueryTimesOutAtItsOwnDeadlineWhileOthersStayOutstanding() throws {
    let h = try Harness()
    let loop = h.channel.embeddedEventLoop
    let long = Outcome(h.handler.send(try dotQuery("long.dot.test.", .a), timeout: .seconds(30)))
    let longQuery = try h.sentQuery().message
    // Sent later with a shorter timeout: it must not wait for the earlier query's deadline.
    let short = Outcome(h.handler.send(try dotQuery("short.dot.test.", .a), timeout: .seconds(2)))
    let third = Outcome(h.handler.send(try dotQuery("third.dot.test.", .a), timeout: .seconds(5)))
    loop.advanceTime(by: .seconds(3))
    #expect(short.error == .timeout)
    #expect(long.isPending && third.isPending)
    loop.advanceTime(by: .seconds(3))
    #expect(third.error == .timeout)
    #expect(long.isPending)
    try h.reply(to: longQuery)
    #expect(long.answerName == "long.dot.test.")
    // A new query after the others is timed from its own send.
    let late = Outcome(h.handler.send(try dotQuery("late.dot.test.", .a), timeout: .seconds(4)))
    loop.advanceTime(by: .seconds(3))
    #expect(late.isPending)
    loop.advanceTime(by: .seconds(2))
    #expect(late.error == .timeout)
    #expect(h.closes.all.isEmpty)
  }

  /// What became of a query's future so far, without blocking on it (EmbeddedEventLoop runs callbacks inline).
  private final class Outcome {
    private var result: Result<Message, any Error>?
    init(_ future: EventLoopFuture<Message>) { future.assumeIsolated().whenComplete { self.result = $0 } }
    var isPending: Bool { result == nil }
    var error: TransportError? {
      if case .failure(let error)? = result { return error as? TransportError }
      return nil
    }
    var answerName: String? {
      if case .success(let message)? = result { return message.questions.first?.name.description }
      return nil
    }
  }

  @Test func idsAreUniqueAmongOutstandingQueries() throws {
    let h = try Harness()
    var ids = Set<UInt16>()
    for _ in 0..<200 {
      _ = h.handler.send(try dotQuery("www.dot.test.", .a, id: 1), timeout: .seconds(5))
      ids.insert(try h.sentQuery().message.header.id)
    }
    #expect(ids.count == 200)
    _ = try? h.channel.close().wait()
  }

  @Test func closeWithQueryOutstandingIsAReset() throws {
    let h = try Harness()
    let future = h.handler.send(try dotQuery("www.dot.test.", .a), timeout: .seconds(5))
    _ = try h.sentQuery()
    try h.channel.close().wait()
    #expect(throws: TransportError.closed) { try future.wait() }
    #expect(h.closes.all == [.resetWithQueriesOutstanding])
  }

  @Test func closeWhileIdleIsClean() throws {
    let h = try Harness()
    try h.channel.close().wait()
    #expect(h.closes.all == [.cleanClose])
  }

  @Test func alertAfterHandshakeIsReportedOnce() throws {
    let h = try Harness()
    h.channel.pipeline.fireErrorCaught(EncryptedFailure.tlsAlert("decode error"))
    h.channel.embeddedEventLoop.run()
    #expect(h.closes.all == [.tlsAlert("decode error")])
    #expect(!h.channel.isActive)
  }

  @Test func idleTimeoutClosesCleanlyCountingFromTheLastAnswerNeverWithAQueryOutstanding() throws {
    let h = try Harness(idleTimeout: .seconds(10))
    let first = h.handler.send(try dotQuery("www.dot.test.", .a), timeout: .seconds(30))
    try h.reply(to: try h.sentQuery().message)
    _ = try first.wait()
    h.channel.embeddedEventLoop.advanceTime(by: .seconds(6))
    let second = h.handler.send(try dotQuery("www.dot.test.", .aaaa), timeout: .seconds(30))
    // 10 s after the first answer a query is outstanding: the session stays open.
    h.channel.embeddedEventLoop.advanceTime(by: .seconds(5))
    #expect(h.closes.all.isEmpty)
    try h.reply(to: try h.sentQuery().message)
    _ = try second.wait()
    h.channel.embeddedEventLoop.advanceTime(by: .seconds(9))
    #expect(h.closes.all.isEmpty)
    h.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
    #expect(h.closes.all == [.cleanClose])
  }
}

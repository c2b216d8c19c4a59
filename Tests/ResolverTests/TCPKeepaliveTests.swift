import Testing

@testable import Resolver

/// RFC 7828 edns-tcp-keepalive on a DoT connection: what every query asks and how each reply's
/// TIMEOUT sets the idle time (T-17, T-20, T-21, T-22).
@Suite struct TCPKeepaliveTests {
  private let second: UInt64 = 1_000_000_000

  private func reply(keepalive data: [UInt8]?, edns: Bool = true) -> Message {
    var m = Message()
    m.header.qr = true
    if edns {
      var e = EDNS()
      e.options = [EDNSOption(code: EDNSOption.paddingCode, data: [0, 0])]
      if let data { e.options.append(EDNSOption(code: EDNSOption.keepaliveCode, data: data)) }
      m.edns = e
    }
    return m
  }

  @Test func withoutAServerTimeoutTheConfiguredIdleTimeHolds() {
    let k = TCPKeepalive(configuredIdle: 30 * second)
    #expect(k.idleTimeout == 30 * second)
    #expect(!k.draining)
  }

  @Test func theServersTimeoutShortensTheIdleTimeToNinetyPercentOfIt() {
    var k = TCPKeepalive(configuredIdle: 30 * second)
    k.noteReply(reply(keepalive: [0, 20]))  // 2.0 s, in units of 100 ms
    #expect(k.serverTimeout == 2 * second)
    #expect(k.idleTimeout == 1_800_000_000, "we close before the server does (T-17)")
    // A longer server timeout never lengthens the configured one.
    k.noteReply(reply(keepalive: [0x0B, 0xB8]))  // 300 s
    #expect(k.idleTimeout == 30 * second)
  }

  @Test func aShortTimeoutKeepsAMarginOfFiftyMilliseconds() {
    var k = TCPKeepalive(configuredIdle: 30 * second)
    k.noteReply(reply(keepalive: [0, 1]))  // 100 ms: 10% would leave 10 ms
    #expect(k.idleTimeout == 50_000_000)
    #expect(!k.draining)
  }

  @Test func eachRepliesTimeoutReplacesTheLastAndNoOptionMeansNoSupport() {
    var k = TCPKeepalive(configuredIdle: 30 * second)
    k.noteReply(reply(keepalive: [0, 50]))
    k.noteReply(reply(keepalive: [0, 10]))
    #expect(k.idleTimeout == 900_000_000, "the newest TIMEOUT wins (T-21)")
    k.noteReply(reply(keepalive: nil))
    #expect(k.serverTimeout == nil && k.idleTimeout == 30 * second, "T-22: RFC 7766 behaviour again")
    k.noteReply(reply(keepalive: [0, 10]))
    k.noteReply(reply(keepalive: nil, edns: false))
    #expect(k.idleTimeout == 30 * second, "a reply without EDNS carries no keepalive either")
  }

  @Test func aMalformedOptionCountsAsNone() {
    var k = TCPKeepalive(configuredIdle: 30 * second)
    k.noteReply(reply(keepalive: [0, 10]))
    k.noteReply(reply(keepalive: []))  // a server must send a TIMEOUT
    #expect(k.idleTimeout == 30 * second)
    k.noteReply(reply(keepalive: [0, 0, 10]))
    #expect(k.idleTimeout == 30 * second && !k.draining)
  }

  @Test func theStateRecordsEachRepliesOwnTimeoutInSeconds() {
    #expect(TCPKeepalive.seconds(in: reply(keepalive: [0, 20])) == 2.0)
    #expect(TCPKeepalive.seconds(in: reply(keepalive: [0x01, 0x2C])) == 30.0)
    #expect(TCPKeepalive.seconds(in: reply(keepalive: [0, 0])) == 0)
    #expect(TCPKeepalive.seconds(in: reply(keepalive: nil)) == nil)
    #expect(TCPKeepalive.seconds(in: reply(keepalive: [7])) == nil)
  }

  @Test func aTimeoutOfZeroDrainsTheConnectionForGood() {
    var k = TCPKeepalive(configuredIdle: 30 * second)
    k.noteReply(reply(keepalive: [0, 0]))
    #expect(k.draining, "T-21: no new queries on this connection")
    k.noteReply(reply(keepalive: [0, 20]))
    #expect(k.draining, "a later reply does not reopen it")
  }

  @Test func everyQueryAsksForKeepaliveWithoutATimeoutAndStaysPadded() throws {
    var book = DoTQueryBook<Int>()
    var query = try dotQuery("www.dot.test.", .a)
    // A keepalive with a TIMEOUT (which only servers send) is replaced by the bare request.
    query.edns = EDNS(options: [EDNSOption(code: EDNSOption.keepaliveCode, data: [0, 9])])
    let added = book.add(query, deadline: 100, completion: 1)
    let framed = try #require(added)
    let sent = try Message.parse(Array(framed.dropFirst(2)))
    let options = sent.edns?.options ?? []
    #expect(options.filter { $0.code == EDNSOption.keepaliveCode } == [TCPKeepalive.request])
    #expect(TCPKeepalive.request.data.isEmpty, "OPTION-LENGTH 0 (T-20)")
    #expect(options.last?.code == EDNSOption.paddingCode, "padding is computed last (T-40)")
    #expect((framed.count - 2) % 128 == 0)
  }
}

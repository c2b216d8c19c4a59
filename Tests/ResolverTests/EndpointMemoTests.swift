import Testing

@testable import Resolver

/// `EndpointMemo`: the endpoints a resolution builds from cached A/AAAA records.
@Suite struct EndpointMemoTests {
  @Test func anAddressIsBuiltOnceAndGivesTheSameServer() throws {
    let memo = EndpointMemo()
    let a = try #require(IPv4Address("192.0.2.53"))
    var built = 0
    for _ in 0..<3 {
      let e = memo.endpoint(octets: a.octets) {
        built += 1
        return ServerEndpoint(v4: a, port: 5353)
      }
      #expect(e.ip == "192.0.2.53")
      #expect(e.port == 5353)
    }
    #expect(built == 1)
  }

  @Test func familiesAndAddressesNeverShareAnEntry() throws {
    let memo = EndpointMemo()
    let v4 = try #require(IPv4Address("127.0.0.1"))
    let other = try #require(IPv4Address("127.0.0.2"))
    let v6 = try #require(IPv6Address("::1"))
    #expect(memo.endpoint(octets: v4.octets) { ServerEndpoint(v4: v4, port: 53) }.ip == "127.0.0.1")
    #expect(
      memo.endpoint(octets: other.octets) { ServerEndpoint(v4: other, port: 53) }.ip == "127.0.0.2")
    let six = memo.endpoint(octets: v6.octets) { ServerEndpoint(v6: v6, port: 53) }
    #expect(six.ip == "::1")
    #expect(six.isIPv6)
    #expect(memo.count == 3)
  }

  @Test func theTableStaysBounded() throws {
    let memo = EndpointMemo()
    for i in 0..<(EndpointMemo.capacity + 10) {
      let a = try #require(
        IPv4Address(octets: [10, UInt8(i >> 16 & 0xFF), UInt8(i >> 8 & 0xFF), UInt8(i & 0xFF)]))
      _ = memo.endpoint(octets: a.octets) { ServerEndpoint(v4: a, port: 53) }
    }
    #expect(memo.count <= EndpointMemo.capacity)
    #expect(memo.count >= 10)
  }
}

import NIOCore
import Testing

@testable import Resolver

/// Server addresses come from A/AAAA records as octets: the endpoint and the scope built from
/// the octets must be exactly what parsing the address text gives (R-10 policy, per-server keys).
@Suite struct ServerEndpointTests {
  static let addresses = [
    "192.0.2.1", "127.0.0.1", "127.53.1.1", "0.0.0.0", "0.1.2.3", "169.254.1.1", "169.253.1.1", "224.0.0.1",
    "255.255.255.255", "10.0.0.1", "2001:db8::1", "::1", "::", "::2", "fe80::1", "febf::1", "fec0::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:192.0.2.1", "::ffff:169.254.0.1", "64:ff9b::192.0.2.1",
  ]

  @Test(arguments: addresses)
  func octetsGiveTheSameEndpointAndScopeAsText(_ text: String) throws {
    let fromText = try #require(ServerEndpoint(ip: text, port: 5353))
    let fromOctets: ServerEndpoint
    let scope: AddressScope
    if let v4 = IPv4Address(text) {
      fromOctets = ServerEndpoint(v4: v4, port: 5353)
      scope = AddressScope.of(v4)
    } else {
      let v6 = try #require(IPv6Address(text))
      fromOctets = ServerEndpoint(v6: v6, port: 5353)
      scope = AddressScope.of(v6)
    }
    #expect(fromOctets == fromText)
    #expect(fromOctets.ip == fromText.ip)
    #expect(fromOctets.isIPv6 == fromText.isIPv6)
    #expect(fromOctets.socketAddress == fromText.socketAddress)
    #expect(fromOctets.socketAddress.ipAddress == fromText.socketAddress.ipAddress)
    #expect(fromOctets.port == 5353)
    #expect(fromOctets.description == fromText.description)
    #expect(scope == AddressScope.of(ip: text))
  }

  @Test func scopesOfNotableAddresses() throws {
    func v4(_ s: String) throws -> AddressScope { AddressScope.of(try #require(IPv4Address(s))) }
    func v6(_ s: String) throws -> AddressScope { AddressScope.of(try #require(IPv6Address(s))) }
    #expect(try v4("127.0.0.1") == .loopback)
    #expect(try v4("0.0.0.0") == .unspecified)
    #expect(try v4("169.254.9.9") == .linkLocal)
    #expect(try v4("239.1.1.1") == .multicast)
    #expect(try v4("198.51.100.7") == .global)
    #expect(try v6("::1") == .loopback)
    #expect(try v6("::") == .unspecified)
    #expect(try v6("fe80::1") == .linkLocal)
    #expect(try v6("ff02::1") == .multicast)
    #expect(try v6("::ffff:127.0.0.1") == .loopback)  // IPv4-mapped takes the IPv4 scope
    #expect(try v6("2001:db8::1") == .global)
  }

  @Test func ipv4TextIsDottedDecimal() throws {
    #expect(IPv4Address(octets: [0, 9, 10, 255])?.description == "0.9.10.255")
    #expect(IPv4Address(octets: [100, 99, 199, 200])?.description == "100.99.199.200")
  }
}

import NIOCore
import Testing

@testable import Resolver

@Suite struct CIDRTests {
  func address(_ ip: String) throws -> SocketAddress { try SocketAddress(ipAddress: ip, port: 53) }

  @Test func ipv4Network() throws {
    let net = try CIDR("127.0.0.0/8")
    #expect(net.isIPv4 && net.prefixLength == 8)
    #expect(net.contains(try address("127.1.2.3")))
    #expect(!net.contains(try address("128.0.0.1")))
    #expect(!net.contains(try address("::1")))
    #expect(net.description == "127.0.0.0/8")
  }

  @Test func hostBitsAreClearedAndBareAddressIsHost() throws {
    #expect(try CIDR("10.1.2.3/8").description == "10.0.0.0/8")
    let host = try CIDR("10.1.2.3")
    #expect(host.prefixLength == 32)
    #expect(host.contains(try address("10.1.2.3")))
    #expect(!host.contains(try address("10.1.2.4")))
    #expect(try CIDR("192.168.0.0/20").contains(try address("192.168.15.255")))
    #expect(!(try CIDR("192.168.0.0/20")).contains(try address("192.168.16.0")))
    #expect(try CIDR("0.0.0.0/0").contains(try address("203.0.113.9")))
  }

  @Test func ipv6Network() throws {
    let loop = try CIDR("::1/128")
    #expect(loop.contains(try address("::1")))
    #expect(!loop.contains(try address("::2")))
    #expect(!loop.contains(try address("127.0.0.1")))
    let doc = try CIDR("2001:db8::/32")
    #expect(doc.contains(try address("2001:db8:ffff::1")))
    #expect(!doc.contains(try address("2001:db9::1")))
    #expect(doc.description == "2001:db8::/32")
  }

  @Test func mappedIPv6MatchesIPv4Networks() throws {
    #expect(try CIDR("127.0.0.0/8").contains(try address("::ffff:127.0.0.1")))
    #expect(!(try CIDR("10.0.0.0/8")).contains(try address("::ffff:127.0.0.1")))
  }

  @Test func defaultIsLoopback() throws {
    #expect(CIDR.loopback.map(\.description) == ["127.0.0.0/8", "::1/128"])
  }

  @Test func errorsNameTheText() {
    for bad in ["", "10.0.0.0/33", "::1/129", "example.com", "10.0.0/8", "10.0.0.0/", "10.0.0.0/-1", "1.2.3.4/8/9"] {
      #expect(throws: CIDRParseError.self) { try CIDR(bad) }
      do {
        _ = try CIDR(bad)
      } catch {
        #expect(error.description.contains("'\(bad)'"))
      }
    }
  }
}

import NIOCore
import Testing

@testable import Resolver

#if canImport(Glibc)
  import Glibc
#endif

@Suite struct ClientConnectionCapTests {
  func address(_ ip: String) -> SocketAddress? { try? SocketAddress(ipAddress: ip, port: 40_000) }

  @Test func anAddressHoldsAtMostItsShareAndAReleaseFreesOne() {
    let cap = ClientConnectionCap(limit: 2)
    let a = address("192.0.2.7")
    let b = address("2001:db8::7")
    #expect(cap.take(a) && cap.take(a))
    #expect(!cap.take(a), "a third connection from one address")
    #expect(cap.take(b) && cap.take(b), "another address has its own share")
    cap.release(a)
    #expect(cap.take(a))
    #expect(!cap.take(a))
  }

  @Test func anIPv4ClientOnADualStackListenerSharesItsIPv4Budget() {
    let cap = ClientConnectionCap(limit: 2)
    #expect(cap.take(address("192.0.2.7")) && cap.take(address("::ffff:192.0.2.7")))
    #expect(!cap.take(address("192.0.2.7")) && !cap.take(address("::FFFF:192.0.2.7")))
    cap.release(address("::ffff:192.0.2.7"))
    #expect(cap.take(address("192.0.2.7")))
  }

  /// Connections from addresses of one IPv6 /64 share its budget (a host rotating its
  /// temporary addresses holds no more); the next /64 has its own.
  @Test func theAddressesOfAnIPv6Slash64ShareOneBudget() {
    let cap = ClientConnectionCap(limit: 2)
    #expect(cap.take(address("2001:db8:1:2::1")) && cap.take(address("2001:db8:1:2:8000::5")))
    #expect(!cap.take(address("2001:db8:1:2:ffff::1")), "a third connection from the same /64")
    #expect(cap.take(address("2001:db8:1:3::1")), "the next /64 is another client")
    cap.release(address("2001:db8:1:2::1"))
    #expect(cap.take(address("2001:db8:1:2:dead::beef")))
  }

  @Test func keysNameTheAddressOrTheSlash64() {
    #expect(ClientKey(address("192.0.2.7")).description == "192.0.2.7")
    #expect(ClientKey(address("::ffff:192.0.2.7")) == ClientKey(address("192.0.2.7")))
    #expect(ClientKey(address("2001:db8:1:2:3:4:5:6")).description == "2001:db8:1:2::/64")
    #expect(ClientKey(address("2001:db8:1:2:3:4:5:6")) == ClientKey(address("2001:db8:1:2::")))
    #expect(ClientKey(address("2001:db8:1:2::")) != ClientKey(address("2001:db8:1:102::")))
    #expect(ClientKey(nil as SocketAddress?) == .unknown)
    // Other prefix lengths: /56 (a subscriber's delegation), /128 (each address), /100 (within
    // the second half).
    #expect(ClientKey(address("2001:db8:1:2ff:3::"), ipv6Prefix: 56).description == "2001:db8:1:200::/56")
    #expect(ClientKey(address("2001:db8::5"), ipv6Prefix: 128) != ClientKey(address("2001:db8::6"), ipv6Prefix: 128))
    #expect(ClientKey(address("2001:db8::5"), ipv6Prefix: 128).description == "2001:db8::5/128")
    #expect(ClientKey(address("2001:db8::1:2:3:4"), ipv6Prefix: 100).description == "2001:db8::1:2:0:0/100")
  }

  /// fe80::/64 is every link's own: link-local clients on two interfaces are two clients, on one
  /// interface one (at /64).
  @Test func linkLocalClientsAreToldApartByTheirInterface() {
    func linkLocal(_ last: UInt8, scope: UInt32) -> SocketAddress {
      var a = sockaddr_in6()
      a.sin6_family = sa_family_t(AF_INET6)
      a.sin6_scope_id = scope
      withUnsafeMutableBytes(of: &a.sin6_addr) { bytes in
        bytes[0] = 0xFE
        bytes[1] = 0x80
        bytes[15] = last
      }
      return SocketAddress(a, host: "")
    }
    #expect(ClientKey(linkLocal(1, scope: 2)) == ClientKey(linkLocal(7, scope: 2)))
    #expect(ClientKey(linkLocal(1, scope: 2)) != ClientKey(linkLocal(1, scope: 3)))
    #expect(ClientKey(linkLocal(1, scope: 2)).description == "fe80::/64%2")
    // A global address's scope is not part of its key.
    #expect(ClientKey(address("2001:db8::1")) == ClientKey(address("2001:db8::2")))
  }

  @Test func eachIPv6AddressIsAClientAtPrefix128() {
    let cap = ClientConnectionCap(limit: 1, ipv6Prefix: 128)
    #expect(cap.take(address("2001:db8:1:2::1")) && cap.take(address("2001:db8:1:2::2")))
    #expect(!cap.take(address("2001:db8:1:2::1")))
  }

  @Test func loopbackUnknownAndNoLimitAreNotCounted() {
    let cap = ClientConnectionCap(limit: 1)
    for _ in 0..<5 {
      #expect(cap.take(address("127.0.0.1")) && cap.take(address("::1")) && cap.take(nil))
    }
    let off = ClientConnectionCap(limit: 0)
    for _ in 0..<5 { #expect(off.take(address("192.0.2.7"))) }
    // A release of something never counted takes nothing away from others.
    let c = address("192.0.2.9")
    #expect(cap.take(c))
    cap.release(address("127.0.0.1"))
    #expect(!cap.take(c))
  }
}

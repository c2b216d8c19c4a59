import Testing

@testable import Resolver

/// The server, zone and query the encryption policy's tests send: 192.0.2.7, `ns.example.test.`
/// for `example.test.`, `www.example.test. A` with ID 42.
protocol PolicyFixture {}

extension PolicyFixture {
  var server: ServerEndpoint { ServerEndpoint(ip: "192.0.2.7", port: 53)! }
  var context: ExchangeContext {
    ExchangeContext(nsName: try? DNSName("ns.example.test."), zone: (try? DNSName("example.test.")) ?? .root)
  }
  var query: Message {
    var m = Message()
    m.header.id = 42
    m.questions = [Question(name: (try? DNSName("www.example.test.")) ?? .root, type: .a)]
    return m
  }
}

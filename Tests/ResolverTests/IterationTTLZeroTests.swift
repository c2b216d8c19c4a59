import Logging
import Testing

@testable import Resolver

/// Delegations and server addresses with TTL 0: the cache keeps none of them, but the
/// resolution that received them uses them for its own further steps.
@Suite struct IterationTTLZeroTests {
  static func zeroTTL(_ m: Message) -> Message {
    var m = m
    m.authority = m.authority.map {
      var rr = $0
      rr.ttl = 0
      return rr
    }
    m.additional = m.additional.map {
      var rr = $0
      rr.ttl = 0
      return rr
    }
    return m
  }

  static let web = IPv4Address(octets: [198, 51, 100, 7]).map { RData.a($0) } ?? .unknown([])

  @Test func aReferralWithTTLZeroIsFollowedAndNotCached() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in
        Self.zeroTTL(referral("example.test.", ns: ["ns.example.test."], glue: [("ns.example.test.", "192.0.2.2")]))
      },
      "192.0.2.2": { q in answer([record(q.name.description, .a, Self.web)]) },
    ])
    let r = scriptedResolver(ex) { $0.qnameMinimisation = false }
    let first = await r.resolve(Question(name: name("www.example.test."), type: .a))
    #expect(first.rcode == .noError && first.answer.map(\.rdata) == [Self.web], "\(first)")
    #expect(ex.queries.map(\.0) == ["192.0.2.1", "192.0.2.2"])
    // Nothing of the delegation was cached: the next name starts at the root again.
    let second = await r.resolve(Question(name: name("mail.example.test."), type: .a))
    #expect(second.rcode == .noError && second.answer.count == 1)
    #expect(ex.queries.map(\.0) == ["192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2"])
  }

  @Test func anOutOfBailiwickServerAddressWithTTLZeroIsUsed() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { q in
        if q.name.isSubdomain(of: name("other.test.")) {
          return referral("other.test.", ns: ["ns1.other.test."], glue: [("ns1.other.test.", "192.0.2.3")])
        }
        return referral("example.test.", ns: ["ns2.other.test."])
      },
      "192.0.2.3": { q in
        // ns2.other.test.'s address, with TTL 0.
        var rr = record(
          q.name.description, .a, IPv4Address(octets: [192, 0, 2, 2]).map { RData.a($0) } ?? .unknown([]))
        rr.ttl = 0
        return answer([rr])
      },
      "192.0.2.2": { q in answer([record(q.name.description, .a, Self.web)]) },
    ])
    let r = scriptedResolver(ex) { $0.qnameMinimisation = false }
    let got = await r.resolve(Question(name: name("www.example.test."), type: .a))
    #expect(got.rcode == .noError && got.answer.map(\.rdata) == [Self.web], "\(got)")
    #expect(ex.queries.last?.0 == "192.0.2.2", "\(ex.queries)")
  }
}

import Logging
import Testing

@testable import Resolver

/// Negative answers that are not what they seem (R-5, R-23, R-29): an NXDOMAIN for an empty
/// non-terminal from a broken server, a stale secondary of the parent, a non-authoritative one.
@Suite struct IterationNegativeTests {
  func resolver(_ exchanger: ScriptedExchanger, _ tweak: (inout ResolverConfiguration) -> Void = { _ in })
    -> RecursiveResolver
  { scriptedResolver(exchanger, tweak) }

  static func soa(_ zone: String) -> ResourceRecord {
    record(
      zone, .soa,
      .soa(
        mname: name("ns.\(zone)"), rname: name("hostmaster.\(zone)"), serial: 1, refresh: 7200, retry: 900,
        expire: 1_209_600, minimum: 300))
  }

  /// `example.test.` answers `x.ent.example.test.` but, as some load balancers do, NXDOMAIN (AA,
  /// no SOA) for the empty non-terminal `ent.example.test.`.
  static func brokenEmptyNonTerminal() -> ScriptedExchanger {
    ScriptedExchanger([
      "192.0.2.1": { q in
        if q.name.isSubdomain(of: name("example.test.")) {
          return referral("example.test.", ns: ["ns.example.test."], glue: [("ns.example.test.", "192.0.2.2")])
        }
        var nodata = Message()  // test. exists, without a cut: the root answers for it
        nodata.header.aa = true
        nodata.authority = [Self.soa(".")]
        return nodata
      },
      "192.0.2.2": { q in
        if q.name == name("x.ent.example.test.") || q.name == name("y.ent.example.test.") {
          return answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))])
        }
        var m = Message()
        m.header.aa = true
        m.rcode = .nxDomain
        return m
      },
    ])
  }

  @Test func relaxedModeAsksAgainUnminimisedAfterAnNXDOMAINForAnEmptyNonTerminal() async {
    let ex = Self.brokenEmptyNonTerminal()
    let r = resolver(ex)
    let first = await r.resolve(Question(name: name("x.ent.example.test."), type: .a))
    #expect(first.rcode == .noError && first.answer.count == 1)
    #expect(ex.queries.map { $0.1.name.description }.suffix(2) == ["ent.example.test.", "x.ent.example.test."])
    // The minimised NXDOMAIN was not cached as a cut: a sibling below it resolves too.
    let sibling = await r.resolve(Question(name: name("y.ent.example.test."), type: .a))
    #expect(sibling.rcode == .noError && sibling.answer.count == 1)
  }

  /// When the full name is NXDOMAIN too, the minimised NXDOMAIN was genuine: it is cached as the
  /// cut it is, so a second name below it costs no query (RFC 8020) even in relaxed mode.
  @Test func relaxedModeCachesTheCutOnceTheFullNameIsNXDOMAINToo() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { q in
        var m = Message()
        m.header.aa = true
        if q.name.isSubdomain(of: name("gone.test.")) {
          m.rcode = .nxDomain
          m.authority = [Self.soa(".")]
        } else {
          m.authority = [Self.soa(".")]  // test. exists (NODATA)
        }
        return m
      }
    ])
    let r = resolver(ex)
    #expect(await r.resolve(Question(name: name("a.b.gone.test."), type: .a)).rcode == .nxDomain)
    let sent = ex.queries.count
    #expect(await r.resolve(Question(name: name("c.d.gone.test."), type: .a)).rcode == .nxDomain)
    #expect(ex.queries.count == sent, "the cut at gone.test. should have answered the second name")
  }

  @Test func strictModeTakesTheNXDOMAINAsACut() async {
    let ex = Self.brokenEmptyNonTerminal()
    let r = resolver(ex) { $0.qnameMinimisationStrict = true }
    let res = await r.resolve(Question(name: name("x.ent.example.test."), type: .a))
    #expect(res.rcode == .nxDomain)
    #expect(!ex.queries.contains { $0.1.name == name("x.ent.example.test.") })
  }

  /// `sub.test.` has two servers; one is a stale secondary of `test.` that has not heard of the
  /// delegation and answers NXDOMAIN with `test.`'s SOA. Whichever is asked first, the client
  /// gets the name's address.
  @Test func negativeAnswerWithTheParentsSOAIsLame() async {
    for round in 0..<8 {
      let ex = ScriptedExchanger([
        "192.0.2.1": { q in
          q.name.isSubdomain(of: name("sub.test."))
            ? referral(
              "sub.test.", ns: ["ns1.sub.test.", "ns2.sub.test."],
              glue: [("ns1.sub.test.", "192.0.2.11"), ("ns2.sub.test.", "192.0.2.12")]) : nil
        },
        "192.0.2.11": { q in answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.8")!))]) },
        "192.0.2.12": { _ in
          var m = Message()
          m.header.aa = true
          m.rcode = .nxDomain
          m.authority = [Self.soa("test.")]
          return m
        },
      ])
      let res = await resolver(ex) { $0.qnameMinimisation = false }.resolve(
        Question(name: name("www.sub.test."), type: .a))
      #expect(res.rcode == .noError && res.answer.count == 1, "round \(round): \(res.rcode)")
    }
  }

  /// An NXDOMAIN that is neither authoritative nor carries the zone's SOA (a recursive server
  /// listed as an NS, say) is not an answer either.
  @Test func nonAuthoritativeNXDOMAINWithoutSOAIsLame() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { q in
        if q.name.isSubdomain(of: name("test.")) {
          var m = Message()
          m.rcode = .nxDomain
          return m
        }
        return nil
      }
    ])
    let res = await resolver(ex) { $0.qnameMinimisation = false }.resolve(
      Question(name: name("www.test."), type: .a))
    #expect(res.rcode == .servFail)
  }

  /// R-23: a non-authoritative NXDOMAIN (with the zone's SOA) reaches the client but is no cut
  /// for the names below it.
  @Test func nonAuthoritativeNXDOMAINIsNotCachedAsACut() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { q in
        var m = Message()
        m.rcode = .nxDomain
        m.authority = [Self.soa(".")]
        return m
      }
    ])
    let r = resolver(ex) { $0.qnameMinimisation = false }
    #expect(await r.resolve(Question(name: name("gone.test."), type: .a)).rcode == .nxDomain)
    #expect(await r.resolve(Question(name: name("below.gone.test."), type: .a)).rcode == .nxDomain)
    #expect(ex.queries.count == 2, "the second name must be asked, not cut off by the first's NXDOMAIN")
  }

  /// One client's resolution spends its query budget while it looks up its zone's glueless NS
  /// name: that name's failure is its run's, not the name's, so it is not cached for others.
  @Test func aSubResolutionCutByTheRunsBudgetIsNotCachedForOthers() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { q in
        if q.name.isSubdomain(of: name("zone.")) { return referral("zone.", ns: ["ns.provider."]) }
        return referral("provider.", ns: ["ns1.provider."], glue: [("ns1.provider.", "192.0.2.3")])
      },
      "192.0.2.3": { q in answer([record(q.name.description, .a, .a(IPv4Address("192.0.2.4")!))]) },
    ])
    let r = resolver(ex) {
      $0.qnameMinimisation = false
      $0.limits.maxQueries = 2
    }
    let first = await r.resolve(Question(name: name("www.zone."), type: .a))
    #expect(first.rcode == .servFail)
    let ns = await r.resolve(Question(name: name("ns.provider."), type: .a))
    #expect(ns.rcode == .noError && ns.answer.count == 1, "\(ns.failureReason ?? "")")
  }

  /// An operator's flush forgets cached resolution failures: the zone just fixed is asked at
  /// once, not after the failure's 5 s (R-24).
  @Test func forgetFailuresLetsTheNextQueryGoUpstream() async {
    let ex = ScriptedExchanger([:])  // every server times out
    let r = resolver(ex) { $0.qnameMinimisation = false }
    let q = Question(name: name("www.test."), type: .a)
    #expect(await r.resolve(q).rcode == .servFail)
    let sent = ex.queries.count
    #expect(await r.resolve(q).failureReason?.contains("cached failure") == true)
    #expect(ex.queries.count == sent)
    r.forgetFailures()
    _ = await r.resolve(q)
    #expect(ex.queries.count > sent)
  }
}

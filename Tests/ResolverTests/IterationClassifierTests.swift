import Testing

@testable import Resolver

@Suite struct ReplyClassifierTests {
  func n(_ s: String) -> DNSName { (try? DNSName(s)) ?? .root }
  func rr(_ name: String, _ type: RRType, _ rdata: RData, ttl: UInt32 = 300) -> ResourceRecord {
    ResourceRecord(name: n(name), type: type, ttl: ttl, rdata: rdata)
  }
  func soa(_ zone: String) -> ResourceRecord {
    rr(
      zone, .soa,
      .soa(mname: n("ns." + zone), rname: n("h." + zone), serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 60))
  }
  func reply(
    aa: Bool = true, rcode: RCode = .noError, answer: [ResourceRecord] = [], authority: [ResourceRecord] = [],
    additional: [ResourceRecord] = []
  ) -> Message {
    var m = Message()
    m.header.qr = true
    m.header.aa = aa
    m.rcode = rcode
    m.answers = answer
    m.authority = authority
    m.additional = additional
    return m
  }
  var a1: RData { .a(IPv4Address("192.0.2.1")!) }

  @Test func referralWithInBailiwickGlueOnly() {
    let m = reply(
      aa: false,
      authority: [
        rr("example.test.", .ns, .ns(n("ns1.example.test."))), rr("example.test.", .ns, .ns(n("ns.other.lab."))),
      ],
      additional: [rr("ns1.example.test.", .a, a1), rr("ns.other.lab.", .a, a1), rr("unrelated.test.", .a, a1)])
    let kind = ReplyClassifier.classify(m, zone: n("test."), qname: n("www.example.test."), qtype: .a)
    guard case .referral(let child, let names, _, let glue) = kind else {
      Issue.record("expected referral, got \(kind)")
      return
    }
    #expect(child == n("example.test."))
    #expect(names.count == 2)
    // ns.other.lab. is outside test. and unrelated.test. is not an NS target.
    #expect(glue.map(\.name) == [n("ns1.example.test.")])
  }

  @Test func upwardReferralIsLame() {
    let m = reply(aa: false, authority: [rr("test.", .ns, .ns(n("ns.test.")))])
    let kind = ReplyClassifier.classify(m, zone: n("example.test."), qname: n("www.example.test."), qtype: .a)
    #expect(kind == .serverFailure("lame"))
  }

  @Test func sidewaysReferralIsLame() {
    let m = reply(aa: false, authority: [rr("other.test.", .ns, .ns(n("ns.other.test.")))])
    let kind = ReplyClassifier.classify(m, zone: n("test."), qname: n("www.example.test."), qtype: .a)
    #expect(kind == .serverFailure("lame"))
  }

  @Test func nsAtZoneApexWithSOAIsNodataNotReferral() {
    let m = reply(authority: [soa("example.test.")])
    let kind = ReplyClassifier.classify(m, zone: n("example.test."), qname: n("x.example.test."), qtype: .a)
    #expect(kind == .nodata(chain: [], soa: soa("example.test.")))
  }

  @Test func cnameChainInsideZoneThenAnswer() {
    let answer = [
      rr("a.example.test.", .cname, .cname(n("b.example.test."))),
      rr("b.example.test.", .cname, .cname(n("c.example.test."))),
      rr("c.example.test.", .a, a1),
    ]
    let kind = ReplyClassifier.classify(
      reply(answer: answer), zone: n("example.test."), qname: n("a.example.test."), qtype: .a)
    #expect(kind == .answer(chain: Array(answer.prefix(2)), records: [answer[2]]))
  }

  /// an answer keeps only in-zone records of the asked name and type; when every record
  /// qualifies, all of them are kept.
  @Test func answerKeepsOnlyTheAskedNameTypeAndZone() {
    let a2 = rr("a.example.test.", .a, .a(IPv4Address("192.0.2.2")!))
    let mine = [rr("a.example.test.", .a, a1), a2]
    let all = ReplyClassifier.classify(
      reply(answer: mine), zone: n("example.test."), qname: n("a.example.test."), qtype: .a)
    #expect(all == .answer(chain: [], records: mine))
    let mixed = [
      mine[0], rr("a.example.test.", .aaaa, .aaaa(IPv6Address("2001:db8::1")!)), rr("evil.other.lab.", .a, a1), a2,
      rr("b.example.test.", .a, a1),
    ]
    let kind = ReplyClassifier.classify(
      reply(answer: mixed), zone: n("example.test."), qname: n("a.example.test."), qtype: .a)
    #expect(kind == .answer(chain: [], records: mine))
  }

  @Test func outOfBailiwickDataAfterCnameIsNotTrusted() {
    // The server of example.test. may not vouch for other.lab. data.
    let answer = [rr("a.example.test.", .cname, .cname(n("x.other.lab."))), rr("x.other.lab.", .a, a1)]
    let kind = ReplyClassifier.classify(
      reply(answer: answer), zone: n("example.test."), qname: n("a.example.test."), qtype: .a)
    #expect(kind == .alias(chain: [answer[0]], target: n("x.other.lab.")))
  }

  @Test func nxdomainAfterCnameLeavingZoneIsIgnored() {
    let answer = [rr("a.example.test.", .cname, .cname(n("x.other.lab.")))]
    let kind = ReplyClassifier.classify(
      reply(rcode: .nxDomain, answer: answer), zone: n("example.test."), qname: n("a.example.test."), qtype: .a)
    #expect(kind == .alias(chain: answer, target: n("x.other.lab.")))
  }

  @Test func dnameIsSynthesizedByTheResolver() {
    // The server sends a wrong CNAME; R-12 says ignore it and synthesize our own.
    let answer = [
      rr("ex.dname.test.", .dname, .dname(n("example.test."))),
      rr("www.ex.dname.test.", .cname, .cname(n("evil.example.test."))),
    ]
    let kind = ReplyClassifier.classify(
      reply(answer: answer), zone: n("dname.test."), qname: n("www.ex.dname.test."), qtype: .a)
    #expect(
      kind
        == .alias(
          chain: [answer[0], rr("www.ex.dname.test.", .cname, .cname(n("www.example.test.")))],
          target: n("www.example.test.")))
    let dnameOnly = ReplyClassifier.classify(
      reply(answer: [answer[0]]), zone: n("dname.test."), qname: n("www.ex.dname.test."), qtype: .a)
    #expect(
      dnameOnly
        == .alias(
          chain: [answer[0], rr("www.ex.dname.test.", .cname, .cname(n("www.example.test.")))],
          target: n("www.example.test.")))
  }

  @Test func dnameOverflowIsYXDomain() {
    let long = String(repeating: "a", count: 63)
    let target = "\(long).\(long).\(long).x."  // 197 octets
    let qname = "\(long).b.ex.dname.test."
    let d = rr("ex.dname.test.", .dname, .dname(n(target)))
    let kind = ReplyClassifier.classify(reply(answer: [d]), zone: n("dname.test."), qname: n(qname), qtype: .a)
    #expect(kind == .yxdomain(chain: [d]))
  }

  @Test func cnameLoopInOneReplyFails() {
    let answer = [
      rr("a.example.test.", .cname, .cname(n("b.example.test."))),
      rr("b.example.test.", .cname, .cname(n("a.example.test."))),
    ]
    let kind = ReplyClassifier.classify(
      reply(answer: answer), zone: n("example.test."), qname: n("a.example.test."), qtype: .a)
    #expect(kind == .serverFailure("cname-loop"))
  }

  @Test func errorRcodesAndNonAuthoritativeEmptyAreServerFailures() {
    #expect(
      ReplyClassifier.classify(reply(rcode: .servFail), zone: .root, qname: n("x."), qtype: .a)
        == .serverFailure("servfail"))
    #expect(
      ReplyClassifier.classify(reply(rcode: .refused), zone: .root, qname: n("x."), qtype: .a)
        == .serverFailure("refused"))
    #expect(
      ReplyClassifier.classify(reply(aa: false), zone: n("test."), qname: n("x.test."), qtype: .a)
        == .serverFailure("lame"))
  }

  @Test func nxdomainCarriesSOA() {
    let kind = ReplyClassifier.classify(
      reply(rcode: .nxDomain, authority: [soa("example.test.")]), zone: n("example.test."),
      qname: n("nope.example.test."), qtype: .a)
    #expect(kind == .nxdomain(chain: [], soa: soa("example.test.")))
  }
}

@Suite struct QnameMinimiserTests {
  @Test func stepSizesFollowRFC9156() {
    // 18 hidden labels → 1,1,1,1,2,2,2,2,3,3.
    var hidden = 18
    var steps: [Int] = []
    while hidden > 0 {
      let k = QnameMinimiser.labelsToExpose(hidden: hidden, stepsTaken: steps.count)
      steps.append(k)
      hidden -= k
    }
    #expect(steps == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3])
  }

  @Test func shortNamesGoOneLabelAtATime() {
    #expect(QnameMinimiser.labelsToExpose(hidden: 3, stepsTaken: 0) == 1)
    #expect(QnameMinimiser.labelsToExpose(hidden: 0, stepsTaken: 0) == 0)
    let q = (try? DNSName("a.b.example.test.")) ?? .root
    let zone = (try? DNSName("test.")) ?? .root
    #expect(QnameMinimiser.nextName(qname: q, zone: zone, stepsTaken: 0).description == "example.test.")
  }

  @Test func neverMoreThanTenQueries() {
    for labels in 1...127 {
      var hidden = labels
      var count = 0
      while hidden > 0 {
        hidden -= QnameMinimiser.labelsToExpose(hidden: hidden, stepsTaken: count)
        count += 1
      }
      #expect(count <= 10, "\(labels) labels took \(count) steps")
    }
  }
}

import Testing

@testable import Resolver

/// A question is the same question in any case (RFC 4343): clients that randomise case (DNS 0x20)
/// share one resolution, and a failure cached for one spelling holds for the others.
@Suite struct QuestionCaseTests {
  static let zones: [String: ScriptedExchanger.Script] = [
    "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) },
    "192.0.2.2": { _ in referral("example.test.", ns: ["ns.example.test."], glue: [("ns.example.test.", "192.0.2.3")])
    },
    "192.0.2.3": { q in
      q.name.description.lowercased().hasPrefix("www.")
        ? answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))]) : nil
    },
  ]

  @Test func spellingsOfOneQuestionInFlightShareOneResolution() async {
    let ex = ScriptedExchanger(Self.zones, delay: .milliseconds(300))
    let r = scriptedResolver(ex) { $0.qnameMinimisation = false }
    async let first = r.resolve(Question(name: name("www.example.test."), type: .a))
    // Wait until the first has started before the others come (it takes 300 ms at the authority).
    let started = ContinuousClock.now
    while !r.isResolving(Question(name: name("WWW.example.TEST."), type: .a)),
      ContinuousClock.now - started < .seconds(5)
    {
      await Task.yield()
    }
    #expect(r.isResolving(Question(name: name("www.EXAMPLE.test."), type: .a)))
    async let second = r.resolve(Question(name: name("WwW.ExAmPlE.tEsT."), type: .a))
    async let third = r.resolve(Question(name: name("WWW.EXAMPLE.TEST."), type: .a))
    let answers = await [first, second, third]
    #expect(answers.allSatisfy { $0.rcode == .noError && $0.answer.count == 1 })
    #expect(ex.queries.filter { $0.0 == "192.0.2.3" }.count == 1)
    #expect(!r.isResolving(Question(name: name("www.example.test."), type: .a)))
  }

  @Test func aFailureCachedForOneSpellingHoldsForTheOthers() async {
    let ex = ScriptedExchanger(Self.zones)
    let r = scriptedResolver(ex) {
      $0.qnameMinimisation = false
      $0.cache.maxStale = 0
    }
    let failed = await r.resolve(Question(name: name("Mail.example.test."), type: .a))
    #expect(failed.rcode == .servFail)
    let asked = ex.queries.count
    let again = await r.resolve(Question(name: name("mail.EXAMPLE.test."), type: .a))
    #expect(again.rcode == .servFail)
    #expect(again.failureReason?.contains("cached failure") == true)
    #expect(ex.queries.count == asked)  // nothing sent
  }
}

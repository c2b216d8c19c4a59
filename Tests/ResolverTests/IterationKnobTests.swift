import Logging
import Testing

@testable import Resolver

/// The operator knobs of the iteration: minimisation mode, glue mode, retries, unroutable families.
@Suite struct IterationKnobTests {
  func resolver(_ exchanger: ScriptedExchanger, _ tweak: (inout ResolverConfiguration) -> Void = { _ in })
    -> RecursiveResolver
  { scriptedResolver(exchanger, tweak) }

  /// A root that fails every minimised query and answers the full name.
  static func rootFailingMinimisedQueries() -> ScriptedExchanger {
    ScriptedExchanger([
      "192.0.2.1": { (q: Question) -> Message? in
        var m = Message()
        if q.name.description == "www.example.test." {
          m = answer([record("www.example.test.", .a, .a(IPv4Address("198.51.100.7")!))])
        } else {
          m.rcode = .servFail
        }
        return m
      }
    ])
  }

  @Test func relaxedMinimisationRetriesWithTheFullName() async {
    let ex = Self.rootFailingMinimisedQueries()
    let r = await resolver(ex).resolve(Question(name: name("www.example.test."), type: .a))
    #expect(r.rcode == .noError)
    #expect(ex.queries.map { $0.1.name.description }.last == "www.example.test.")
  }

  @Test func strictMinimisationNeverSendsTheFullName() async {
    let ex = Self.rootFailingMinimisedQueries()
    let r = await resolver(ex) { $0.qnameMinimisationStrict = true }.resolve(
      Question(name: name("www.example.test."), type: .a))
    #expect(r.rcode == .servFail)
    #expect(!ex.queries.contains { $0.1.name.description == "www.example.test." })
  }

  @Test func queryRetriesArePassesOverTheServers() async {
    for retries in [1, 3] {
      let ex = ScriptedExchanger([:])  // every server times out
      _ = await resolver(ex) {
        $0.queryRetries = retries
        $0.qnameMinimisation = false
      }.resolve(Question(name: name("www.example.test."), type: .a))
      #expect(ex.queries.count == retries)
    }
  }

  /// Two NS names at one address are one server: a dead one is sent the query once a pass, not
  /// once per name and pass.
  @Test func nsNamesSharingAnAddressAreAskedOnce() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in
        referral(
          "test.", ns: ["ns1.test.", "ns2.test."], glue: [("ns1.test.", "192.0.2.9"), ("ns2.test.", "192.0.2.9")])
      }
    ])
    let r = await resolver(ex) {
      $0.qnameMinimisation = false
      $0.queryRetries = 2
    }.resolve(Question(name: name("www.test."), type: .a))
    #expect(r.rcode == .servFail)
    // Two sends per delegation learnt (the R-43 refresh asks the root once more).
    let delegations = ex.queries.filter { $0.0 == "192.0.2.1" }.count
    #expect(ex.queries.filter { $0.0 == "192.0.2.9" }.count == 2 * delegations)
  }

  /// A zone's two servers: one answers, the other is useless — it answers REFUSED (fast), or
  /// nothing listens on its port 53. After its first such reply it is asked after the other, not
  /// first again (its round trip measured no useful server).
  @Test(arguments: ["refused", "unreachable"])
  func aUselessServerIsNotAskedFirstAgain(_ how: String) async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in
        referral("test.", ns: ["a.test.", "b.test."], glue: [("a.test.", "192.0.2.10"), ("b.test.", "192.0.2.11")])
      },
      "192.0.2.10": { q in answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.1")!))]) },
      "192.0.2.11": { q in
        guard how == "refused" else { return nil }
        var m = Message()
        m.rcode = .refused
        return m
      },
    ])
    ex.failure.withLock { $0 = .unreachable("ECONNREFUSED") }
    let r = resolver(ex) { $0.qnameMinimisation = false }
    for i in 0..<20 {
      let res = await r.resolve(Question(name: name("n\(i).test."), type: .a))
      #expect(res.rcode == .noError)
    }
    #expect(ex.queries.filter { $0.0 == "192.0.2.11" }.count <= 1, "\(how): asked first again")
  }

  @Test func unroutableFamilyIsSkippedWithoutQueries() async {
    let ex = ScriptedExchanger([:])
    var config = ResolverConfiguration()
    config.rootHints = RootHints(unchecked: [(name("a.root."), ["2001:db8::53"])])
    config.primeRoot = false
    config.ipv6Routable = false
    let r = await RecursiveResolver(
      configuration: config, exchanger: ex, time: SystemTimeSource(), logger: Logger(label: "test")
    ).resolve(Question(name: name("www.example.test."), type: .a))
    #expect(r.rcode == .servFail)
    #expect(ex.queries.isEmpty)
  }

  @Test func relaxedGlueUsesOutOfBailiwickAddresses() async {
    func script() -> ScriptedExchanger {
      ScriptedExchanger([
        "192.0.2.1": { (q: Question) -> Message? in
          q.name.isSubdomain(of: name("test."))
            ? referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) : nil
        },
        "192.0.2.2": { _ in
          referral("example.test.", ns: ["ns.other.example."], glue: [("ns.other.example.", "192.0.2.3")])
        },
        "192.0.2.3": { q in answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))]) },
      ])
    }
    let question = Question(name: name("www.example.test."), type: .a)
    let relaxed = script()
    #expect(await resolver(relaxed) { $0.relaxedGlue = true }.resolve(question).rcode == .noError)
    #expect(relaxed.queries.contains { $0.0 == "192.0.2.3" })
    let strict = script()
    _ = await resolver(strict).resolve(question)
    #expect(!strict.queries.contains { $0.0 == "192.0.2.3" })
  }
}

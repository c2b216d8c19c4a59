import Logging
import NIOCore
import Synchronization
import Testing

@testable import Resolver

/// A server held as unresponsive inside real resolutions (`ResolutionRun.ask`): left out of later
/// resolutions while its zone has a live server, probed beside them (or by them when no live
/// server is left), and used again once it answers; an encrypted transport's silence holds
/// nothing.
@Suite struct UnresponsiveServerTests {
  /// `test.` has two servers, 192.0.2.2 and 192.0.2.3; each answers A queries while its flag in
  /// `up` is set and is silent otherwise. Every timeout moves the clock on by a second, as a real
  /// one would; `transport` is the kind of leg the exchanges report. While `gated` holds a
  /// server, its exchanges wait until it is released.
  final class Lab: UpstreamExchanger {
    let time = FakeTimeSource(0)
    let up = Mutex<[String: Bool]>(["192.0.2.2": true, "192.0.2.3": true])
    let sent = Mutex<[String]>([])
    let gated = Mutex<Set<String>>([])
    /// Each server's round trip, ms (1 if not set).
    let rtt = Mutex<[String: Double]>([:])
    /// Servers whose queries the exchanger reports as encrypted (preferred for privacy).
    let encrypted = Mutex<Set<String>>([])
    /// Servers that answer every query REFUSED (lame).
    let refusing = Mutex<Set<String>>([])
    let transport: TransportKind

    init(transport: TransportKind = .do53UDP) { self.transport = transport }

    nonisolated(nonsending) func exchange(
      _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
    ) async -> ExchangeResult {
      guard let q = query.questions.first else { return ExchangeResult(legs: [], response: nil) }
      sent.withLock { $0.append(server.ip) }
      while gated.withLock({ $0.contains(server.ip) }) { try? await Task.sleep(for: .milliseconds(2)) }
      var reply: Message
      if server.ip == "192.0.2.1" {
        reply = referral(
          "test.", ns: ["ns1.test.", "ns2.test."], glue: [("ns1.test.", "192.0.2.2"), ("ns2.test.", "192.0.2.3")])
      } else if refusing.withLock({ $0.contains(server.ip) }) {
        reply = Message()
        reply.rcode = .refused
      } else if up.withLock({ $0[server.ip] ?? false }), let address = IPv4Address("198.51.100.7") {
        reply = answer([record(q.name.description, .a, .a(address))])
      } else {
        time.advance(1)
        return ExchangeResult(
          legs: [ExchangeLeg(transport: transport, rttMs: nil, error: .timeout, truncated: false)], response: nil)
      }
      reply.header.id = query.header.id
      reply.header.qr = true
      reply.questions = [q]
      return ExchangeResult(
        legs: [
          ExchangeLeg(transport: transport, rttMs: rtt.withLock { $0[server.ip] ?? 1 }, error: nil, truncated: false)
        ], response: reply)
    }

    func prefersForPrivacy(_ ip: String) -> Bool { encrypted.withLock { $0.contains(ip) } }

    func set(_ ip: String, up isUp: Bool) { up.withLock { $0[ip] = isUp } }
    func gate(_ ip: String, _ closed: Bool) {
      gated.withLock { if closed { $0.insert(ip) } else { $0.remove(ip) } }
    }
    var count: Int { sent.withLock { $0.count } }
    func sent(since: Int) -> [String] { sent.withLock { Array($0.dropFirst(since)) } }
  }

  func resolver(_ lab: Lab) -> RecursiveResolver {
    var config = ResolverConfiguration()
    config.rootHints = RootHints(unchecked: [(name("a.root."), ["192.0.2.1"])])
    config.primeRoot = false
    config.qnameMinimisation = false
    config.failureCacheTTL = 0
    return RecursiveResolver(configuration: config, exchanger: lab, time: lab.time, logger: Logger(label: "test"))
  }

  /// Holds `192.0.2.2` as a resolution would after three silent timeouts (a resolution with
  /// the live server beside it asks the silent one once, then orders it last by its srtt).
  func holdFirstServer(_ r: RecursiveResolver, _ lab: Lab) -> Bool {
    lab.set("192.0.2.2", up: false)
    for _ in 0..<3 {
      let sent = lab.time.now()
      lab.time.advance(1)
      r.serverSelection.recordTimeout(server: "192.0.2.2", sentAt: sent)
    }
    return r.serverSelection.heldServers == 1
  }

  @Test func aHeldServersDueProbeGoesBesideTheLiveServerAndBringsItBack() async {
    let lab = Lab()
    let r = resolver(lab)
    let selection = r.serverSelection
    let background = Mutex<[Hop]>([])
    r.backgroundHops.connect { hops in background.withLock { $0 += hops } }
    #expect(holdFirstServer(r, lab))
    // Held: later resolutions ask only the live server.
    var before = lab.count
    for i in 0..<5 { #expect(await r.resolve(Question(name: name("a\(i).test."), type: .a)).rcode == .noError) }
    #expect(!lab.sent(since: before).contains("192.0.2.2"))
    // Its probe comes due while it is still silent, and its exchange hangs: the next resolution
    // answers from the live server without waiting for it; the hold stays, the next probe later.
    lab.time.advance(5)
    lab.gate("192.0.2.2", true)
    before = lab.count
    let b = await r.resolve(Question(name: name("b.test."), type: .a))
    #expect(b.rcode == .noError && !b.hops.contains { $0.server == "192.0.2.2" })
    #expect(await eventually { lab.sent(since: before).contains("192.0.2.2") })  // sent, hanging
    #expect(background.withLock { $0.isEmpty } && selection.timeouts(server: "192.0.2.2") == 3)
    lab.gate("192.0.2.2", false)
    #expect(await eventually { selection.timeouts(server: "192.0.2.2") == 4 })
    #expect(selection.heldServers == 1 && (selection.probeIn(server: "192.0.2.2") ?? 0) > 0)
    // The probe's query is counted like any other (Privacy): one cleartext hop, a timeout.
    #expect(await eventually { background.withLock { $0.count } == 1 })
    #expect(
      background.withLock { $0.map { "\($0.server) \($0.qname) \($0.outcome)" } } == ["192.0.2.2 b.test. timeout"])
    // It answers again: the next due probe, beside a resolution, ends the hold.
    lab.set("192.0.2.2", up: true)
    lab.time.advance(10)
    #expect(await r.resolve(Question(name: name("c.test."), type: .a)).rcode == .noError)
    #expect(await eventually { selection.heldServers == 0 })
    #expect(selection.probesSent == 2 && selection.probeIn(server: "192.0.2.2") == nil)
    // The live server dies: the one that came back answers, no probe needed.
    lab.set("192.0.2.3", up: false)
    before = lab.count
    #expect(await r.resolve(Question(name: name("d.test."), type: .a)).rcode == .noError)
    #expect(lab.sent(since: before).last == "192.0.2.2" && selection.probesSent == 2)
  }

  /// The live server fails while the held one's probe beside the resolution gets a reply: the
  /// resolution asks the held one after all, as it would have asked it after the live one.
  @Test func aResolutionWhoseLiveServersFailUsesAHeldServerItsProbeFoundBack() async {
    let lab = Lab()
    let r = resolver(lab)
    #expect(holdFirstServer(r, lab))
    lab.time.advance(5)
    lab.set("192.0.2.2", up: true)
    lab.set("192.0.2.3", up: false)
    let out = await r.resolve(Question(name: name("e.test."), type: .a))
    #expect(out.rcode == .noError)
    #expect(out.hops.last.map { "\($0.server) \($0.outcome)" } == "192.0.2.2 answer")
    #expect(r.serverSelection.heldServers == 0)
    #expect(r.hardening.delegationRefreshCount == 0)  // within the step, not by R-43's restart
  }

  /// With no live server left, the resolution sends the due probe itself and waits for it.
  @Test func aZoneWithEveryServerHeldIsProbedByTheResolution() async {
    let lab = Lab()
    let r = resolver(lab)
    let selection = r.serverSelection
    lab.set("192.0.2.2", up: false)
    lab.set("192.0.2.3", up: false)
    for i in 0..<4 { _ = await r.resolve(Question(name: name("s\(i).test."), type: .a)) }
    #expect(selection.heldServers == 2)
    let held = await r.resolve(Question(name: name("held.test."), type: .a))
    #expect(held.rcode == .servFail && held.hops.allSatisfy { $0.server == "192.0.2.1" })
    lab.set("192.0.2.3", up: true)
    lab.time.advance(40)
    let probed = await r.resolve(Question(name: name("probed.test."), type: .a))
    #expect(probed.rcode == .noError && probed.hops.last?.server == "192.0.2.3")
    #expect(selection.heldServers == 1 && selection.probesSent >= 1)
  }

  @Test func silenceToOneKindOfQueryHoldsThatKindOnly() async {
    let clock = FakeTimeSource(0)
    let selection = ServerSelection(unknownTimeoutMs: 800, rule: ServerHealth.Rule(), time: clock)
    for sent in [0.0, 1.0, 2.0] {
      clock.advance(sent + 1 - clock.now())
      selection.recordTimeout(server: "s", sentAt: sent, kind: .other)
    }
    #expect(selection.heldServers == 1)
    #expect(selection.admitted(["s"], key: { $0 }, runStarted: 10, kind: .other).heldBack == 1)
    #expect(selection.admitted(["s"], key: { $0 }, runStarted: 10, kind: .a).free == ["s"])
    #expect(selection.admitted(["s"], key: { $0 }, runStarted: 10, kind: .aaaa).free == ["s"])
  }

  /// Both servers silent for six names: over Do53 both are held; over DoT (an encrypted
  /// transport's timeouts, the policy's business) neither is, though their timeouts count.
  @Test(arguments: [TransportKind.do53UDP, .dot])
  func onlyDo53SilenceHoldsAServer(transport: TransportKind) async {
    let lab = Lab(transport: transport)
    let r = resolver(lab)
    lab.set("192.0.2.2", up: false)
    lab.set("192.0.2.3", up: false)
    for i in 0..<6 { #expect(await r.resolve(Question(name: name("s\(i).test."), type: .a)).rcode == .servFail) }
    #expect(r.serverSelection.timeouts(server: "192.0.2.2") >= 3)
    #expect(r.serverSelection.heldServers == (transport == .dot ? 0 : 2))
  }
}

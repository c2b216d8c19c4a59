import Logging
import Testing

@testable import Resolver

/// A server from before EDNS (RFC 6891 §6.2.2, R-38, T-46): it answers an EDNS query with FORMERR
/// and no OPT, and a plain one properly. The retry without EDNS is remembered for a while.
@Suite struct IterationEDNSFallbackTests {
  static let web = IPv4Address(octets: [198, 51, 100, 8]).map { RData.a($0) } ?? .unknown([])

  /// Root 192.0.2.1 delegates old.test. to 192.0.2.2, which refuses EDNS (FORMERR, no OPT) when
  /// `refuses` says so.
  static func oldServer(refuses: @escaping @Sendable (Message) -> Bool = { $0.edns != nil }) -> ScriptedExchanger {
    ScriptedExchanger(
      ["192.0.2.1": { _ in referral("old.test.", ns: ["ns.old.test."], glue: [("ns.old.test.", "192.0.2.2")]) }],
      queryScripts: [
        "192.0.2.2": { query in
          guard let q = query.questions.first else { return nil }
          if refuses(query) {
            var formErr = Message()
            formErr.rcode = .formErr
            return formErr
          }
          if q.name.labelCount == 2 {  // old.test. itself: NODATA
            var m = Message()
            m.header.aa = true
            m.authority = [record("old.test.", .soa, .unknown([]))]
            return m
          }
          return answer([record(q.name.description, .a, Self.web)])
        }
      ])
  }

  @Test func aServerThatRefusedEDNSIsAskedWithoutItNextTime() async {
    let ex = Self.oldServer()
    let r = scriptedResolver(ex) { $0.qnameMinimisation = false }
    let first = await r.resolve(Question(name: name("www.old.test."), type: .a))
    #expect(first.rcode == .noError && first.answer.map(\.rdata) == [Self.web], "\(first)")
    let toOld = { ex.ednsLog.withLock { $0 }.filter { $0.0 == "192.0.2.2" }.map(\.1) }
    #expect(toOld() == [true, false], "one EDNS query refused, then one without")
    #expect(r.hardening.ednsFallbackCount == 1)
    let second = await r.resolve(Question(name: name("mail.old.test."), type: .a))
    #expect(second.rcode == .noError && second.answer.count == 1)
    #expect(toOld() == [true, false, false], "the second name must go without EDNS at once")
    #expect(r.hardening.ednsFallbackCount == 1)
  }

  @Test func aServerThatFailsWithoutEDNSTooIsNotRemembered() async {
    let ex = Self.oldServer(refuses: { _ in true })
    let r = scriptedResolver(ex) { $0.qnameMinimisation = false }
    _ = await r.resolve(Question(name: name("www.old.test."), type: .a))
    #expect(r.core.ednsFallback.count == 0)
    let sent = ex.ednsLog.withLock { $0 }.filter { $0.0 == "192.0.2.2" }.map(\.1)
    #expect(sent.first == true && sent.count >= 2)
  }

  @Test func aServerThatRefusesThePlainRetryIsNotRemembered() async {
    let ex = ScriptedExchanger(
      ["192.0.2.1": { _ in referral("old.test.", ns: ["ns.old.test."], glue: [("ns.old.test.", "192.0.2.2")]) }],
      queryScripts: [
        "192.0.2.2": { query in
          var m = Message()
          m.rcode = query.edns != nil ? .formErr : .refused
          return m
        }
      ])
    let r = scriptedResolver(ex) { $0.qnameMinimisation = false }
    _ = await r.resolve(Question(name: name("www.old.test."), type: .a))
    #expect(r.core.ednsFallback.count == 0, "REFUSED without EDNS says nothing about EDNS")
  }

  @Test func theMemoExpiresAndIsBounded() {
    final class Clock: TimeSource, @unchecked Sendable {
      var t = 0.0
      func now() -> Double { t }
    }
    let clock = Clock()
    let memo = EDNSFallbackMemo(lifetime: 300, capacity: 2, time: clock)
    memo.remember("192.0.2.2")
    #expect(memo.isPlain("192.0.2.2") && !memo.isPlain("192.0.2.3"))
    clock.t = 301
    #expect(!memo.isPlain("192.0.2.2"), "EDNS is tried again after the lifetime")
    memo.remember("a")
    memo.remember("b")
    memo.remember("c")
    #expect(memo.count <= 2 && memo.isPlain("c"))
  }
}

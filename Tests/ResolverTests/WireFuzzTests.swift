import Foundation
import Testing

@testable import Resolver

@Suite struct WireFuzzTests {
  /// 20,000 mutations take seconds (tens under ASan), so they run on a thread of their own, not on
  /// the cooperative pool the other tests share (`onOwnThread`).
  @Test func randomMutationsNeverCrash() async throws {
    var m = Message()
    m.header.id = 7
    m.questions = [Question(name: wn("www.example.com."), type: .a)]
    m.answers = wireSamples.map(\.0).filter { $0.type != .hinfo }
    m.authority = [wrr("example.com.", .ns, .ns(wn("ns.example.com.")))]
    m.additional = [wrr("ns.example.com.", .a, .a(IPv4Address("192.0.2.9")!))]
    m.edns = EDNS(udpPayloadSize: 1232, options: [EDNSOption(code: 10, data: Array(1...8))])
    let base = m.serialize()
    #expect(try Message.parse(base) == m)

    let (accepted, changed) = try await onOwnThread { try Self.mutate(base, times: 20_000) }
    #expect(accepted > 0)
    // Whatever parses must print, re-serialize and parse back to the same message.
    #expect(changed.isEmpty, "\(changed.count) did not round-trip, among them: \(changed.prefix(3))")
  }

  /// Parses `times` random mutations of `base`; returns how many parsed, and the ones that did not
  /// parse back the same after serializing (as hex).
  private static func mutate(_ base: [UInt8], times: Int) throws -> (accepted: Int, changed: [String]) {
    var rng = SplitMix64(state: 0x5077_0D15)
    var accepted = 0
    var changed: [String] = []
    for _ in 0..<times {
      var bytes = base
      switch rng.next() % 4 {
      case 0:
        for _ in 0..<(1 + rng.next() % 4) {
          bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
        }
      case 1:
        bytes.removeSubrange(Int(rng.next() % UInt64(bytes.count))...)
      case 2:
        let i = Int(rng.next() % UInt64(bytes.count))
        bytes[i] ^= 1 << UInt8(rng.next() % 8)
        if rng.next() % 2 == 0 { bytes.removeSubrange(Int(rng.next() % UInt64(bytes.count))...) }
      default:
        bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count)))
      }
      guard let parsed = try? Message.parse(bytes) else { continue }
      accepted += 1
      for rr in parsed.answers + parsed.authority + parsed.additional { _ = rr.presentation }
      if try Message.parse(parsed.serialize()) != parsed {
        changed.append(bytes.map { String(format: "%02x", $0) }.joined())
      }
    }
    return (accepted, changed)
  }
}

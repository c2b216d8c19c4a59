import Foundation
import Testing

@testable import Resolver

/// The reasons the policy keeps as parts read exactly as the strings it used to build at once.
@Suite struct TransportReasonTests {
  @Test func dampedAndProbingPartsReadInTheOldFormat() {
    var both = TransportReason.Parts()
    both.append(.damped(.doq, until: 86_400 + 3_660, cause: "connection refused"))
    both.append(.probeStarted(.dot))
    #expect(
      TransportReason(do53: both).description
        == "Do53: DoQ damped until 1970-01-02 01:01 UTC after connection refused; DoT probe started")
    var skipped = TransportReason.Parts()
    skipped.append(.probeSkipped(.dot, cap: 8))
    skipped.append(.probing(.doq))
    skipped.append(.damped(.dot, until: .infinity, cause: nil))
    #expect(
      TransportReason(do53: skipped).description
        == "Do53: DoT probe skipped: 8 probes in flight; DoQ probe in flight; DoT damped until never")
    #expect(TransportReason(do53: TransportReason.Parts()).description == "Do53")
  }

  @Test func twoTransportsDampedByTheTableReadAsBefore() {
    var settings = EncryptionSettings()
    settings.transports = [.doq, .dot]
    var table = EncryptionTable(settings: settings)
    let ip = "192.0.2.9"
    for t in [EncryptedTransport.doq, .dot] {
      _ = table.connectionStarted(ip, t, now: 0)
      table.handshakeFailed(ip, t, now: 1, failure: "refused", timedOut: false, detail: "connection refused")
    }
    guard case .do53(let reason, let probes) = table.decide(ip, now: 2) else {
      Issue.record("expected Do53")
      return
    }
    #expect(probes.isEmpty)
    #expect(
      reason.description
        == "Do53: DoQ damped until 1970-01-02 00:00 UTC after connection refused; "
        + "DoT damped until 1970-01-02 00:00 UTC after connection refused")
  }

  @Test func hopsAndLegsKeepTheReasonUnderItsKey() throws {
    var parts = TransportReason.Parts()
    parts.append(.probing(.dot))
    var leg = ExchangeLeg(
      transport: .do53UDP, rttMs: 1, error: nil, truncated: false, transportReason: TransportReason(do53: parts))
    #expect(leg.reason == "Do53: DoT probe in flight")
    leg.reason = "DoT: session established"
    #expect(leg.transportReason == "DoT: session established")
    var hop = Hop(
      server: "192.0.2.1", nsName: nil, zone: "example.", qname: "www.example.", qtype: "A", transport: .do53UDP,
      rttMs: 1, outcome: "answer")
    hop.transportReason = TransportReason(do53: parts)
    let json = try JSONEncoder().encode(hop)
    let object = try JSONSerialization.jsonObject(with: json) as? [String: Any]
    #expect(object?["reason"] as? String == "Do53: DoT probe in flight")
    #expect(object?["transportReason"] == nil)
    let back = try JSONDecoder().decode(Hop.self, from: json)
    #expect(back.reason == hop.reason)
    #expect(back == hop)
  }
}

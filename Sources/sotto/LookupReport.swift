import Foundation
import Resolver

/// The `--json` shape of a lookup: question, rcode, sections, hops, elapsed time.
struct LookupReport: Encodable {
  struct QuestionJSON: Encodable {
    var name: String
    var type: String
  }
  struct RecordJSON: Encodable {
    var name: String
    var type: String
    var ttl: UInt32
    var data: String
  }
  struct HopJSON: Encodable {
    var server: String
    var nsName: String?
    var zone: String
    var qname: String
    var qtype: String
    var transport: String
    var rttMs: Double?
    var outcome: String
    var reason: String?
    var resumed: Bool?
    var earlyData: Bool?

    enum CodingKeys: String, CodingKey {
      case server, nsName, zone, qname, qtype, transport, rttMs, outcome, reason, resumed, earlyData
    }
    func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(server, forKey: .server)
      try c.encode(nsName, forKey: .nsName)
      try c.encode(zone, forKey: .zone)
      try c.encode(qname, forKey: .qname)
      try c.encode(qtype, forKey: .qtype)
      try c.encode(transport, forKey: .transport)
      try c.encode(rttMs, forKey: .rttMs)  // null when the hop got no response
      try c.encode(outcome, forKey: .outcome)
      try c.encode(reason, forKey: .reason)
      if transport == "DoT" || transport == "DoQ" {
        try c.encode(resumed, forKey: .resumed)
        try c.encode(earlyData, forKey: .earlyData)
      }
    }
  }
  var question: QuestionJSON
  var rcode: String
  var answer: [RecordJSON]
  var authority: [RecordJSON]
  var hops: [HopJSON]
  var fromCache: Bool
  var stale: Bool
  var elapsedMs: Double
  var error: String?

  init(question: Question, resolution r: Resolution) {
    self.question = QuestionJSON(name: question.name.description, type: question.type.description)
    rcode = r.rcode.description
    answer = r.answer.map(Self.record)
    authority = r.authority.map(Self.record)
    hops = r.hops.map {
      HopJSON(
        server: $0.server, nsName: $0.nsName, zone: $0.zone, qname: $0.qname, qtype: $0.qtype,
        transport: $0.transport.rawValue, rttMs: $0.rttMs.map { ($0 * 1000).rounded() / 1000 }, outcome: $0.outcome,
        reason: $0.reason, resumed: $0.resumed, earlyData: $0.earlyData)
    }
    fromCache = r.fromCache
    stale = r.stale
    elapsedMs = (r.elapsedMs * 1000).rounded() / 1000
    error = r.failureReason
  }

  static func record(_ rr: ResourceRecord) -> RecordJSON {
    RecordJSON(name: rr.name.description, type: rr.type.description, ttl: rr.ttl, data: rr.rdata.presentation)
  }

  func jsonText() -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    guard let data = try? encoder.encode(self), let text = String(data: data, encoding: .utf8) else { return "{}" }
    return text
  }

  /// One line per query sent: server (NS name), zone, QNAME/QTYPE sent, transport, RTT, outcome.
  static func traceText(_ r: Resolution) -> String {
    var out = ";; TRACE (\(r.hops.count) queries)\n"
    for (i, h) in r.hops.enumerated() {
      let ns = h.nsName.map { " (\($0))" } ?? ""
      let rtt = h.rttMs.map { String(format: "%.1f ms", $0) } ?? "-"
      var why = h.reason.map { "  [\($0)]" } ?? ""
      if h.resumed == true {
        why += " (resumed" + (h.earlyData.map { $0 ? ", 0-RTT accepted" : ", 0-RTT rejected" } ?? "") + ")"
      }
      out +=
        ";; \(i + 1). \(h.server)\(ns) zone \(h.zone) ? \(h.qname) \(h.qtype) via \(h.transport.rawValue) \(rtt) -> \(h.outcome)\(why)\n"
    }
    return out + "\n"
  }

  /// dig-style text, with the trace first when asked.
  static func text(question: Question, resolution r: Resolution, trace: Bool) -> String {
    var out = trace ? traceText(r) : ""
    out += ";; ->>HEADER<<- opcode: QUERY, status: \(r.rcode)\n"
    out += ";; flags: qr rd ra; QUERY: 1, ANSWER: \(r.answer.count), AUTHORITY: \(r.authority.count), ADDITIONAL: 0\n\n"
    out += ";; QUESTION SECTION:\n;\(question.name)\t\t\(question.qclass)\t\(question.type)\n"
    if !r.answer.isEmpty {
      out += "\n;; ANSWER SECTION:\n" + r.answer.map { $0.presentation + "\n" }.joined()
    }
    if !r.authority.isEmpty {
      out += "\n;; AUTHORITY SECTION:\n" + r.authority.map { $0.presentation + "\n" }.joined()
    }
    let cache = r.fromCache ? "from cache" : "\(r.hops.count) upstream queries"
    out += "\n;; Query time: \(Int(r.elapsedMs.rounded())) msec (\(cache))\n"
    if r.stale { out += ";; EDE: 3 (Stale Answer): expired records served with TTL 30\n" }
    if let reason = r.failureReason { out += ";; Reason: \(reason)\n" }
    return out
  }
}

import Foundation

/// The answer to `lookup` over the control socket and in the dashboard's lookup pane.
public struct LookupOutcome: Sendable, Codable, Hashable {
  public var name: String
  public var type: String
  public var rcode: String
  public var answer: [String]
  public var cacheHit: Bool
  /// Answered with expired data: no fresh answer in time (serve-stale); `failureReason` says why.
  public var stale: Bool
  public var latencyMs: Double
  public var hops: [HopSummary]
  public var failureReason: String?

  public init(question: Question, resolution r: Resolution) {
    name = question.name.description
    type = question.type.description
    rcode = r.rcode.description
    answer = r.answer.map { $0.presentation }
    cacheHit = r.fromCache
    stale = r.stale
    latencyMs = r.elapsedMs
    hops = r.hops.map(\.summary)
    failureReason = r.failureReason
  }
}

/// Executes control requests against a `ResolverStack`; shared by the socket and the dashboard.
public struct ControlHandler: Sendable {
  public let stack: ResolverStack
  public init(stack: ResolverStack) { self.stack = stack }

  /// The response line (without newline) for one request line.
  public func respond(to line: String) async -> String {
    switch ControlRequest.parse(line: line) {
    case .success(let request): return await respond(to: request)
    case .failure(let problem): return Self.failure(problem.description)
    }
  }

  public func respond(to request: ControlRequest) async -> String {
    switch request.cmd {
    case "stats":
      return Self.success(key: "stats", stack.snapshot().stats)
    case "servers":
      return Self.success(key: "servers", stack.snapshot().servers)
    case "queries":
      let all = stack.monitor.snapshot().queries
      return Self.success(key: "queries", Array(all.prefix(max(0, request.limit ?? all.count))))
    case "flush":
      if request.negative == true {
        return Self.object(["ok": true, "flushed": stack.flushNegative(), "what": "negative"])
      }
      if let text = request.name {
        guard let name = try? DNSName(text) else { return Self.failure("flush: '\(text)' is not a domain name") }
        let n = stack.flush(name: name, subtree: true)
        return Self.object(["ok": true, "flushed": n, "name": name.description])
      }
      return Self.object(["ok": true, "flushed": stack.flushCache(), "what": "all"])
    case "forget", "probe":
      guard let ip = request.ip, !ip.isEmpty else { return Self.failure("\(request.cmd) needs \"ip\"") }
      guard stack.policy != nil else { return Self.failure("\(request.cmd): encryption is off") }
      let unknown = Self.failure("\(request.cmd): no server \(ip) in the encryption table")
      if request.cmd == "forget" {
        guard stack.forget(ip: ip) else { return unknown }
        return Self.object(["ok": true, "ip": ip, "done": request.cmd])
      }
      guard let outcome = stack.probe(ip: ip) else { return unknown }
      return Self.object([
        "ok": true, "ip": ip, "done": request.cmd, "started": outcome.started.map(\.rawValue),
        "skipped": outcome.skipped, "summary": outcome.summary,
      ])
    case "lookup":
      guard let text = request.name, let name = try? DNSName(text) else {
        return Self.failure("lookup needs a domain name in \"name\"")
      }
      guard let type = RRType(mnemonic: request.type ?? "A") else {
        return Self.failure("lookup: unknown type '\(request.type ?? "")'")
      }
      let question = Question(name: name, type: type)
      let resolution = await stack.resolver.resolve(question)
      stack.monitor.record(client: "lookup", question: question, resolution: resolution)
      return Self.success(key: "lookup", LookupOutcome(question: question, resolution: resolution))
    default:
      return Self.failure(
        "unknown command '\(request.cmd)'; known: \(ControlRequest.commands.joined(separator: ", "))")
    }
  }

  static func success<T: Encodable>(key: String, _ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    guard let data = try? encoder.encode(value), let body = String(data: data, encoding: .utf8) else {
      return failure("cannot encode \(key)")
    }
    return "{\"ok\":true,\"\(key)\":\(body)}"
  }

  static func object(_ dict: [String: Any]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys]) else {
      return "{\"ok\":false}"
    }
    return String(decoding: data, as: UTF8.self)
  }

  static func failure(_ message: String) -> String { object(["ok": false, "error": message]) }
}

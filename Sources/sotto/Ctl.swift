import ArgumentParser
import Foundation
import Resolver
import TUI

/// `sotto ctl`: drives a running `sotto serve --control PATH` from scripts, like `unbound-control`.
struct Ctl: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ctl",
    abstract: "Send a command to a running resolver's control socket.",
    discussion: """
      Commands: stats | servers | queries | flush [NAME] | flush-negative | forget IP | probe IP | \
      lookup NAME [TYPE] | raw JSON. Exit status 0 on {"ok":true}, 1 when the server reports an \
      error, 2 when the socket cannot be reached.
      """)

  @Option(name: .long, help: "Control socket path (as given to `sotto serve --control`).")
  var control: String

  @Flag(name: .long, help: "Print the raw JSON response line.")
  var json = false

  @Argument(help: "Command and its arguments.")
  var words: [String]

  func validate() throws {
    guard !words.isEmpty else {
      throw ValidationError("missing command: stats, servers, queries, flush, forget, probe, lookup")
    }
  }

  func run() throws {
    let line: String
    do {
      line = try Self.requestLine(words)
    } catch let e as ValidationError {
      throw e
    }
    let reply: String
    do {
      let client = try ControlClient(path: control, timeout: 30)
      reply = try client.send(line: line)
    } catch {
      FileHandle.standardError.write(Data("sotto ctl: \(error.description)\n".utf8))
      throw ExitCode(2)
    }
    let object = (try? JSONSerialization.jsonObject(with: Data(reply.utf8))) as? [String: Any]
    let ok = object?["ok"] as? Bool == true
    if json || object == nil {
      print(reply)
    } else if !ok {
      FileHandle.standardError.write(Data("sotto ctl: \(object?["error"] as? String ?? reply)\n".utf8))
    } else {
      print(Self.present(words[0], reply: reply, object: object!))
    }
    if !ok { throw ExitCode(1) }
  }

  /// The JSON request line for command-line words.
  static func requestLine(_ words: [String]) throws -> String {
    let cmd = words[0]
    let args = Array(words.dropFirst())
    var request = ControlRequest(cmd: cmd)
    switch cmd {
    case "stats", "servers", "queries":
      if cmd == "queries", let n = args.first {
        guard let limit = Int(n), limit >= 0 else { throw ValidationError("queries [LIMIT]: '\(n)' is not a count") }
        request.limit = limit
      } else if !args.isEmpty {
        throw ValidationError("\(cmd) takes no arguments")
      }
    case "flush":
      guard args.count <= 1 else { throw ValidationError("flush [NAME]") }
      request.name = args.first
    case "flush-negative":
      request = ControlRequest(cmd: "flush", negative: true)
    case "forget", "probe":
      guard args.count == 1 else { throw ValidationError("\(cmd) IP") }
      request.ip = args[0]
    case "lookup":
      guard (1...2).contains(args.count) else { throw ValidationError("lookup NAME [TYPE]") }
      request.name = args[0]
      request.type = args.count > 1 ? args[1] : "A"
    case "raw":
      guard args.count == 1 else { throw ValidationError("raw JSON") }
      return args[0]
    default:
      // Sent as is: the server answers with the list of commands it knows.
      break
    }
    let data = try JSONEncoder().encode(request)
    return String(decoding: data, as: UTF8.self)
  }

  /// Human-readable output: a short table for servers and queries, pretty JSON otherwise.
  static func present(_ cmd: String, reply: String, object: [String: Any]) -> String {
    let renderer = Renderer(width: 160, height: 1000)
    let decoder = JSONDecoder()
    func decode<T: Decodable>(_ key: String, _ type: T.Type) -> T? {
      guard let v = object[key], let d = try? JSONSerialization.data(withJSONObject: v) else { return nil }
      return try? decoder.decode(T.self, from: d)
    }
    switch cmd {
    case "servers":
      guard let servers = decode("servers", [ServerSnapshot].self) else { break }
      let cols = renderer.serverColumns()
      let now = Date().timeIntervalSince1970
      var lines = [cols.map { Format.pad($0.0, $0.1) }.joined(separator: " ")]
      lines += servers.map { renderer.serverRow($0, cols: cols, now: now, selected: false).text }
      return lines.map { $0.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) }.joined(
        separator: "\n")
    case "queries":
      guard let queries = decode("queries", [QueryLogEntry].self) else { break }
      let cols = renderer.queryColumns()
      var lines = [cols.map { Format.pad($0.0, $0.1) }.joined(separator: " ")]
      lines += queries.map { renderer.queryRow($0, cols: cols).text }
      return lines.map { $0.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) }.joined(
        separator: "\n")
    default: break
    }
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) else {
      return reply
    }
    return String(decoding: data, as: UTF8.self)
  }
}

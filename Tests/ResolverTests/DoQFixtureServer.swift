import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

/// The test-only DoQ server (`Fixtures/doq_server.py`, aioquic + dnspython) as a child process on
/// 127.0.0.1. Its stdout lines ("LISTENING <port>", "QUERY <id> <name>", "CLOSE <code> <reason>") are
/// collected for assertions.
final class DoQFixtureServer: Sendable {
  /// True when python3 can import aioquic and dnspython.
  static let available: Bool = {
    let probe = Process()
    probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    probe.arguments = ["python3", "-c", "import aioquic, dns.message"]
    probe.standardOutput = FileHandle.nullDevice
    probe.standardError = FileHandle.nullDevice
    do {
      try probe.run()
      probe.waitUntilExit()
      return probe.terminationStatus == 0
    } catch {
      return false
    }
  }()

  static let scriptPath = path(of: "doq_server.py")

  /// A fixture script's path (`Fixtures/`).
  static func path(of script: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(script)").path
  }

  private let process: Process
  private let output = LockedText()
  let port: Int

  /// Starts the server with `flags` and waits (up to 15 s) until it listens. `script`: another
  /// fixture of the same conventions (`Fixtures/dot_lanes_server.py`).
  init(script: String = "doq_server.py", flags: [String] = []) async throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", Self.path(of: script), "--port", "0"] + flags
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.standardError
    self.process = process
    let output = self.output
    pipe.fileHandleForReading.readabilityHandler = { handle in
      let data = handle.availableData
      guard !data.isEmpty else {
        handle.readabilityHandler = nil
        return
      }
      output.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
    }
    try process.run()
    var found: Int?
    for _ in 0..<150 {
      let text = output.text.withLock { $0 }
      if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("LISTENING ") }) {
        found = Int(line.dropFirst("LISTENING ".count))
        break
      }
      if !process.isRunning { break }
      try await Task.sleep(for: .milliseconds(100))
    }
    guard let found else {
      kill(process.processIdentifier, SIGKILL)
      throw DoQTestError.serverDidNotStart
    }
    port = found
  }

  var endpoint: ServerEndpoint {
    get throws {
      guard let e = ServerEndpoint(ip: "127.0.0.1", port: port) else { throw DoQTestError.badEndpoint }
      return e
    }
  }

  /// The server's self-signed certificate (PEM), to trust as an extra CA file.
  var certificatePath: String? {
    log.split(separator: "\n").first { $0.hasPrefix("CERT ") }.map { String($0.dropFirst("CERT ".count)) }
  }

  /// Everything the server printed so far.
  var log: String { output.text.withLock { $0 } }

  /// Waits up to `seconds` for a line starting with `prefix`.
  func waitForLine(prefix: String, seconds: Double = 10) async -> Bool {
    await waitForLog(seconds: seconds) { $0.split(separator: "\n").contains(where: { $0.hasPrefix(prefix) }) }
  }

  /// Waits up to `seconds` for the log to contain `text`.
  func waitForLog(containing text: String, seconds: Double = 10) async -> Bool {
    await waitForLog(seconds: seconds) { $0.contains(text) }
  }

  private func waitForLog(seconds: Double, until seen: (String) -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if seen(log) { return true }
      try? await Task.sleep(for: .milliseconds(50))
    }
    return seen(log)  // a task that resumed past the deadline still sees a line that came in time
  }

  func stop() {
    // SIGKILL: the child may inherit a blocked SIGTERM from the test runner.
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }

  deinit { stop() }
}

/// Text shared between the pipe reader and the test.
final class LockedText: Sendable {
  let text = Mutex<String>("")
}

enum DoQTestError: Error {
  case serverDidNotStart
  case badEndpoint
  case noTicket
}

/// Collects what a connection's callbacks report.
final class DoQCallbackLog: Sendable {
  private let state = Mutex<(tickets: [[UInt8]], closes: [EncryptedFailure])>(([], []))
  var tickets: [[UInt8]] { state.withLock { $0.tickets } }
  var closes: [EncryptedFailure] { state.withLock { $0.closes } }
  var onTicket: @Sendable ([UInt8]) -> Void { { ticket in self.state.withLock { $0.tickets.append(ticket) } } }
  var onClose: @Sendable (EncryptedFailure) -> Void { { failure in self.state.withLock { $0.closes.append(failure) } } }

  /// Polls until `condition` holds or `seconds` pass.
  func wait(seconds: Double = 3, until condition: (DoQCallbackLog) -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if condition(self) { return true }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return condition(self)
  }
}

/// A query for `name` A with EDNS and the given caller ID.
func doqTestQuery(_ name: String, id: UInt16) throws -> Message {
  var query = Message()
  query.header.id = id
  query.questions = [Question(name: try DNSName(name), type: .a)]
  query.edns = EDNS()
  return query
}

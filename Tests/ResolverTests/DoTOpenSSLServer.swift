import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Resolver

/// `openssl s_server` on 127.0.0.1 (not a DNS server): for handshake-only checks such as ALPN selection,
/// TLS 1.2, and alerts. Started in its own process group, stopped by `stop()`.
final class OpenSSLTestServer {
  let directory: URL
  let pid: pid_t
  let endpoint: ServerEndpoint
  private var stopped = false

  /// Starts `s_server` with `options` added; nil (skipped, or a CI failure) without `openssl`.
  static func start(_ options: [String]) async throws -> OpenSSLTestServer? {
    guard let openssl = NSDDoTServer.executable("openssl") else {
      let message = "openssl is needed for this DoT test (apt-get install openssl)"
      if ProcessInfo.processInfo.environment["CI"] == "true" {
        Issue.record(Comment(rawValue: message))
      } else {
        print("skipped: \(message)")
      }
      return nil
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-sserver-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let key = dir.appendingPathComponent("key.pem").path
    let cert = dir.appendingPathComponent("cert.pem").path
    try NSDDoTServer.run(
      openssl,
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ns1.dot.test", "-keyout", key, "-out", cert])
    // A port nobody listens on right now.
    let probe = try await SilentTCPListener()
    let port = probe.port
    await probe.stop()
    guard let endpoint = ServerEndpoint(ip: "127.0.0.1", port: port) else { throw DoTTestError.setup("endpoint") }
    let pid = try NSDDoTServer.spawn(
      openssl, ["s_server", "-quiet", "-accept", "127.0.0.1:\(port)", "-cert", cert, "-key", key] + options)
    let server = OpenSSLTestServer(directory: dir, pid: pid, endpoint: endpoint)
    // Up once a TCP connect is no longer refused.
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline {
      if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(to: endpoint.socketAddress).get()
      {
        try? await channel.close()
        return server
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    server.stop()
    throw DoTTestError.setup("openssl s_server did not start")
  }

  private init(directory: URL, pid: pid_t, endpoint: ServerEndpoint) {
    self.directory = directory
    self.pid = pid
    self.endpoint = endpoint
  }

  func stop() {
    guard !stopped else { return }
    stopped = true
    kill(-pid, SIGKILL)
    var status: Int32 = 0
    _ = waitpid(pid, &status, 0)
    try? FileManager.default.removeItem(at: directory)
  }
}

/// Handshake behaviour against `openssl s_server`.
@Suite(.serialized) struct DoTHandshakeVariantTests {
  private func connect(_ server: OpenSSLTestServer) async throws(EncryptedFailure) -> (DoTConnection, TLSHandshakeInfo) {
    let context: DoTClientContext
    do { context = try DoTClientContext() } catch { throw .tlsError("\(error)") }
    return try await DoTConnection.connect(
      to: server.endpoint, expectedName: nil, context: context, group: MultiThreadedEventLoopGroup.singleton,
      resumption: nil, connectTimeout: .seconds(2), handshakeTimeout: .seconds(3), idleTimeout: .seconds(5),
      onTicket: { _ in }, onClose: { _ in })
  }

  @Test func serverSelectingDotIsRecorded() async throws {
    guard let server = try await OpenSSLTestServer.start(["-alpn", "dot"]) else { return }
    defer { server.stop() }
    let (connection, info) = try await connect(server)
    #expect(info.alpn == "dot")
    #expect(info.tlsVersion == "TLSv1.3")
    connection.close()
  }

  @Test func tls12IsAccepted() async throws {
    guard let server = try await OpenSSLTestServer.start(["-tls1_2", "-alpn", "dot"]) else { return }
    defer { server.stop() }
    let (connection, info) = try await connect(server)
    #expect(info.tlsVersion == "TLSv1.2")
    #expect(info.alpn == "dot")
    connection.close()
  }

  @Test func serverAlertIsReportedByDescription() async throws {
    // TLS 1.2 server demanding a client certificate: it aborts our handshake with an alert.
    guard let server = try await OpenSSLTestServer.start(["-tls1_2", "-Verify", "1", "-verify_return_error"]) else {
      return
    }
    defer { server.stop() }
    do {
      let (connection, _) = try await connect(server)
      connection.close()
      Issue.record("handshake should have failed")
    } catch {
      #expect(error == .tlsAlert("handshake failure"))
      #expect(error.className == "tls-alert")
    }
  }
}

import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Resolver

/// `openssl s_server -www` on 127.53.200.2 (not a DNS server; -www because it never reads stdin): for handshake-only checks such as ALPN selection,
/// TLS 1.2, and alerts. Started in its own process group on a free port drawn at start, stopped by `stop()`.
final class OpenSSLTestServer {
  static let address = "127.53.200.2"
  let directory: URL
  let pid: pid_t
  let endpoint: ServerEndpoint
  private var stopped = false

  /// Starts `s_server` with `options` added; nil (skipped, or a CI failure) without `openssl`.
  /// With `sniTrap`, a client sending SNI `ns1.dot.test` gets a second certificate, CN=sni-was-sent.
  /// `key` is the certificate's key for `openssl req -newkey` ("rsa:1024" with a security level
  /// of 0 in `options` for a weak one).
  static func start(_ options: [String], sniTrap: Bool = false, key: String = "rsa:2048") async throws
    -> OpenSSLTestServer?
  {
    let address = Self.address
    guard let openssl = NSDDoTServer.executable("openssl") else {
      let message = "openssl is needed for this DoT test (apt-get install openssl)"
      if ProcessInfo.processInfo.environment["CI"] == "true" {
        Issue.record(Comment(rawValue: message))
      } else {
        print("skipped: \(message)")
      }
      return nil
    }
    return try await retryingOnAnotherPort(address) { port in
      try await start(openssl: openssl, options: options, sniTrap: sniTrap, keyType: key, port: port)
    }
  }

  private static func start(openssl: String, options: [String], sniTrap: Bool, keyType: String, port: Int)
    async throws
    -> OpenSSLTestServer
  {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-sserver-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let key = dir.appendingPathComponent("key.pem").path
    let cert = dir.appendingPathComponent("cert.pem").path
    try await NSDDoTServer.run(
      openssl,
      [
        "req", "-x509", "-newkey", keyType, "-nodes", "-days", "1", "-subj", "/CN=ns1.dot.test", "-keyout", key,
        "-out", cert,
      ])
    var options = options
    if sniTrap {
      let key2 = dir.appendingPathComponent("key2.pem").path
      let cert2 = dir.appendingPathComponent("cert2.pem").path
      try await NSDDoTServer.run(
        openssl,
        [
          "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sni-was-sent", "-keyout", key2,
          "-out", cert2,
        ])
      options += ["-servername", "ns1.dot.test", "-cert2", cert2, "-key2", key2]
    }
    // A free port on an address of its own (the suite is serialized; s_server sets SO_REUSEADDR).
    guard let endpoint = ServerEndpoint(ip: address, port: port) else { throw DoTTestError.setup("endpoint") }
    let pid = try NSDDoTServer.spawn(
      openssl, ["s_server", "-www", "-accept", "\(address):\(port)", "-cert", cert, "-key", key] + options)
    let server = OpenSSLTestServer(directory: dir, pid: pid, endpoint: endpoint)
    // Up once a whole handshake gets an answer: success, or the alert a server is set up to send.
    // (A bare TCP probe is not enough: s_server may still reset the next connection.)
    let context = try DoTClientContext()
    let deadline = Date().addingTimeInterval(10)
    var lastError: EncryptedFailure? = nil
    var status: Int32 = 0
    var exited = false
    while Date() < deadline && !exited {
      do {
        let (connection, _) = try await DoTConnection.connect(
          to: endpoint, expectedName: nil, context: context,
          resumption: nil, connectTimeout: .seconds(1), handshakeTimeout: .seconds(2), idleTimeout: .seconds(1),
          onTicket: { _ in }, onClose: { _ in })
        connection.close()
        return server
      } catch .tlsAlert {
        return server
      } catch {
        lastError = error
        exited = waitpid(pid, &status, WNOHANG) == pid  // could not bind its port, for one
        if !exited { try await Task.sleep(for: .milliseconds(50)) }
      }
    }
    exited = exited || waitpid(pid, &status, WNOHANG) == pid
    server.stop()
    throw DoTTestError.setup("openssl s_server did not start: \(lastError.map { "\($0)" } ?? "-"), exited: \(exited)")
  }

  /// The server's self-signed certificate (PEM).
  var certificatePath: String { directory.appendingPathComponent("cert.pem").path }

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
  private func connect(
    _ server: OpenSSLTestServer, expectedName: String? = nil, idleTimeout: TimeAmount = .seconds(5),
    trust: TrustStore? = nil, onClose: @escaping @Sendable (EncryptedFailure) -> Void = { _ in }
  ) async throws(EncryptedFailure) -> (DoTConnection, TLSHandshakeInfo) {
    let context: DoTClientContext
    let name: DNSName?
    do {
      context = try trust.map { try DoTClientContext(trust: $0) } ?? DoTClientContext()
      name = try expectedName.map { try DNSName($0) }
    } catch { throw .tlsError("\(error)") }
    return try await DoTConnection.connect(
      to: server.endpoint, expectedName: name, context: context,
      resumption: nil, connectTimeout: .seconds(2), handshakeTimeout: .seconds(3), idleTimeout: idleTimeout,
      onTicket: { _ in }, onClose: onClose)
  }

  /// A query that times out ends an idle period: the idle timeout counts from then, so the session
  /// does not close the moment the query's timeout is told (its caller would take that for a lost
  /// session). Times are taken where things happen (connect, onClose), so a test task resumed late
  /// on a loaded machine does not move them.
  @Test func idleTimeoutCountsFromAQueryThatTimedOut() async throws {
    guard let server = try await OpenSSLTestServer.start(["-alpn", "dot"]) else { return }
    defer { server.stop() }
    let closes = DoTRecorder<(EncryptedFailure, Date)>()
    let started = Date()
    let (connection, _) = try await connect(
      server, idleTimeout: .seconds(4), onClose: { closes.append(($0, Date())) })
    // s_server never answers: the query times out 5 s after it was sent. (The idle timeout is
    // long enough for a test task that resumes seconds late after connect under the sanitizers.)
    await #expect(throws: TransportError.timeout) {
      _ = try await connection.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(5))
    }
    let (reason, at) = try #require(await closes.waitForFirst(seconds: 15))
    #expect(reason == .cleanClose)
    let closedAfter = at.timeIntervalSince(started)
    // Idle from the timeout (>= 5 s) for 4 s: not before 9 s. Counted from the handshake it
    // would close at the timeout itself.
    #expect(closedAfter > 7.5, "closed \(closedAfter) s after the start")
  }

  /// s_server never answers a DNS query; when it goes away with one outstanding, the query fails
  /// with `.closed` at once (not at its timeout) and the session ends as a reset, reported once.
  @Test func serverGoneWithAQueryOutstandingIsAReset() async throws {
    guard let server = try await OpenSSLTestServer.start(["-alpn", "dot"]) else { return }
    defer { server.stop() }
    let closes = DoTRecorder<EncryptedFailure>()
    let (connection, _) = try await connect(server, onClose: { closes.append($0) })
    let started = Date()
    let connectedActivity = connection.lastActivity
    let query = Task { () -> TransportError? in
      do {
        _ = try await connection.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(20))
        return nil
      } catch let error as TransportError {
        return error
      }
    }
    // The server goes only once the query is on the connection: a query task that starts late on
    // a loaded machine would otherwise find the session already closed (CI's ASan run did).
    let sendDeadline = Date().addingTimeInterval(10)
    while connection.lastActivity == connectedActivity, Date() < sendDeadline {
      try await Task.sleep(for: .milliseconds(10))
    }
    try #require(connection.lastActivity != connectedActivity, "the query was never sent")
    try await Task.sleep(for: .milliseconds(100))
    #expect(connection.isActive)
    server.stop()
    #expect(try await query.value == .closed)
    #expect(Date().timeIntervalSince(started) < 10, "failed when the server went, not at the timeout")
    let reason = await closes.waitForFirst()
    #expect(reason == .resetWithQueriesOutstanding)
    try await Task.sleep(for: .milliseconds(100))
    #expect(closes.all.count == 1)
    #expect(!connection.isActive)
  }

  @Test func serverSelectingDotIsRecorded() async throws {
    guard let server = try await OpenSSLTestServer.start(["-alpn", "dot"]) else { return }
    defer { server.stop() }
    let (connection, info) = try await connect(server)
    #expect(info.alpn == "dot")
    #expect(info.tlsVersion == "TLSv1.3")
    connection.close()
  }

  @Test func noSNIIsSentEvenWithAnExpectedName() async throws {
    guard let server = try await OpenSSLTestServer.start(["-alpn", "dot"], sniTrap: true) else { return }
    defer { server.stop() }
    let (connection, info) = try await connect(server, expectedName: "ns1.dot.test.")
    #expect(info.certificate.subject == "/CN=ns1.dot.test", "the SNI certificate would say CN=sni-was-sent")
    #expect(info.certificate.problems == ["self-signed"], "the name is still checked, without SNI")
    connection.close()
  }

  /// libssl applies OpenSSL's security level to the chain: a trusted certificate with a 1024-bit
  /// RSA key fails it (Debian's level is 2), reported with OpenSSL's text, as over DoQ
  /// (`DoQConnectionTests.weakKeyFailsTheSecurityLevel`). The handshake itself completes: the
  /// verdict is informational (OE-26).
  @Test func weakKeyFailsTheSecurityLevel() async throws {
    guard
      let server = try await OpenSSLTestServer.start(
        ["-alpn", "dot", "-cipher", "DEFAULT:@SECLEVEL=0"], key: "rsa:1024")
    else { return }
    defer { server.stop() }
    let trust = try TrustStore(trustFile: server.certificatePath)
    try #require(
      trust.securityLevel >= 2, "OpenSSL's security level here is \(trust.securityLevel); RSA-1024 passes below 2")
    let (connection, info) = try await connect(server, expectedName: "ns1.dot.test.", trust: trust)
    #expect(info.certificate.problems == ["other:EE certificate key too weak"])
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
    // A TLS 1.3-only server with a cipher suite we do not offer answers the ClientHello with an alert.
    guard let server = try await OpenSSLTestServer.start(["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_8_SHA256"])
    else { return }
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

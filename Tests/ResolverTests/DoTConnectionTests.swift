import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Resolver

/// DoT against a real NSD on 127.53.200.1 (a free port) started by each test (serialized).
@Suite(.serialized) struct DoTConnectionTests {
  let group = MultiThreadedEventLoopGroup.singleton

  private func connect(
    _ server: NSDDoTServer, expectedName: String? = "ns1.dot.test.", resumption: [UInt8]? = nil,
    context: DoTClientContext? = nil,
    idleTimeout: TimeAmount = .seconds(30),
    tickets: DoTRecorder<[UInt8]> = DoTRecorder(),
    closes: DoTRecorder<EncryptedFailure> = DoTRecorder(),
    maxConnections: Int = 1, lanesMinRTT: TimeAmount = .milliseconds(1),
    counters: EncryptedReplyCounters = .init()
  ) async throws -> (DoTConnection, TLSHandshakeInfo) {
    let name = try expectedName.map { try DNSName($0) }
    return try await DoTConnection.connect(
      to: server.endpoint, expectedName: name, context: try context ?? DoTClientContext(),
      resumption: resumption, connectTimeout: .seconds(2), handshakeTimeout: .seconds(3),
      idleTimeout: idleTimeout, maxConnections: maxConnections, lanesMinRTT: lanesMinRTT,
      onTicket: { tickets.append($0) }, onClose: { closes.append($0) }, counters: counters)
  }

  /// `waves` rounds of `count` queries sent at once on `connection`; each answer is checked
  /// against its question. Returns how many were answered.
  private func overlappingWaves(_ connection: DoTConnection, waves: Int, count: Int) async throws -> Int {
    var answered = 0
    for wave in 0..<waves {
      answered += try await withThrowingTaskGroup(of: Bool.self) { group in
        for i in 0..<count {
          let id = UInt16(wave * count + i + 1)
          let query = try dotQuery("n\(id).dot.test.", .a, id: id)
          group.addTask {
            let r = try await connection.query(query, timeout: .seconds(3))
            return r.header.id == id && r.rcode == .nxDomain && r.questions.first?.name == query.questions.first?.name
          }
        }
        var ok = 0
        for try await good in group where good { ok += 1 }
        return ok
      }
    }
    return answered
  }

  /// NSD holds an answer behind an unacknowledged one, so overlapping queries go on extra
  /// connections (`DoTLanes`): at most `maxConnections - 1` of them, every query answered on
  /// whichever it took; closing the session closes them too.
  @Test func overlappingQueriesSpreadOverExtraConnectionsUpToTheCap() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let counters = EncryptedReplyCounters()
    let closes = DoTRecorder<EncryptedFailure>()
    let (connection, _) = try await connect(
      server, closes: closes, maxConnections: 3, lanesMinRTT: .zero, counters: counters)
    #expect(try await overlappingWaves(connection, waves: 6, count: 20) == 120)
    #expect((1...2).contains(counters.extraDoTConnections), "\(counters.extraDoTConnections) extra connections")
    #expect(server.establishedConnections() == 1 + counters.extraDoTConnections)
    connection.close()
    #expect(await closes.waitForFirst() == .cleanClose)
    for _ in 0..<50 where server.establishedConnections() > 0 { try await Task.sleep(for: .milliseconds(20)) }
    #expect(server.establishedConnections() == 0, "the extra connections closed with the session")
  }

  /// The gate reads the kernel's round trip (TCP_INFO): loopback's is some microseconds, so a
  /// minimum of 1 µs lets extra connections open and the default 1 ms keeps them off.
  @Test func theRoundTripGateReadsTheKernelsMeasure() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let counters = EncryptedReplyCounters()
    let (connection, _) = try await connect(
      server, maxConnections: 3, lanesMinRTT: .microseconds(1), counters: counters)
    #expect(try await overlappingWaves(connection, waves: 6, count: 20) == 120)
    #expect(counters.extraDoTConnections >= 1, "a round trip of 0 µs read: the gate never opens")
    connection.close()
  }

  /// Below `lanesMinRTT` (loopback's round trip is microseconds; the default is 1 ms) a hold
  /// costs less than a handshake: overlapping queries stay on the one connection.
  @Test func underTheMinimumRoundTripOverlappingQueriesStayOnOneConnection() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let counters = EncryptedReplyCounters()
    let (connection, _) = try await connect(server, maxConnections: 3, counters: counters)
    #expect(try await overlappingWaves(connection, waves: 3, count: 20) == 60)
    #expect(counters.extraDoTConnections == 0)
    connection.close()
  }

  @Test func handshakeReportsVersionALPNAndCertificate() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let (connection, info) = try await connect(server)
    #expect(info.tlsVersion == "TLSv1.3")
    // NSD 4.6 selects no ALPN (accepted: alpn nil); the s_server test below checks "dot".
    #expect(info.alpn == nil || info.alpn == "dot")
    #expect(info.resumed == false)
    #expect(info.certificate.problems == ["self-signed"])
    #expect(info.certificate.subject == "/CN=ns1.dot.test")
    #expect(info.certificate.notAfter?.hasSuffix("Z") == true)
    #expect(info.handshakeMs > 0)
    #expect(connection.isActive)
    connection.close()

    let (other, otherInfo) = try await connect(server, expectedName: "other.test.")
    #expect(otherInfo.certificate.problems.contains("self-signed"))
    #expect(otherInfo.certificate.problems.contains("wrong-name"))
    #expect(!otherInfo.certificate.isValid)
    other.close()

    // No name: the IP is checked, and the certificate has no IP SAN.
    let (byIP, byIPInfo) = try await connect(server, expectedName: nil)
    #expect(byIPInfo.certificate.problems.contains("wrong-name"))
    byIP.close()
  }

  @Test func extraCAFileMakesTheCertificateValid() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let lab = try DoTClientContext(
      extraCAFile: server.directory.appendingPathComponent("cert.pem").path)
    let (connection, info) = try await connect(server, context: lab)
    #expect(info.certificate.problems == [])
    #expect(info.certificate.isValid)
    connection.close()
    let (other, otherInfo) = try await connect(server, expectedName: "other.test.", context: lab)
    #expect(otherInfo.certificate.problems == ["wrong-name"])
    other.close()
    #expect(throws: (any Error).self) { try DoTClientContext(extraCAFile: "/nonexistent/ca.pem") }
  }

  /// `SSL_CERT_FILE` naming OpenSSL's default bundle (as CI environments set it) is read from the
  /// hashed directory like no setting at all; any other file is a bundle to parse.
  @Test(
    .enabled(
      if: FileManager.default.fileExists(atPath: "/etc/ssl/certs/ca-certificates.crt")
        && FileManager.default.fileExists(atPath: "/usr/lib/ssl/cert.pem"), "needs Debian's ca-certificates"))
  func theDefaultBundleCountsAsNoBundle() throws {
    #expect(TrustStore.isDefaultBundle("/etc/ssl/certs/ca-certificates.crt"))
    #expect(TrustStore.isDefaultBundle("/usr/lib/ssl/cert.pem"))
    let copy = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-bundle-\(getpid()).pem")
    try FileManager.default.copyItem(atPath: "/etc/ssl/certs/ca-certificates.crt", toPath: copy.path)
    defer { try? FileManager.default.removeItem(at: copy) }
    #expect(!TrustStore.isDefaultBundle(copy.path))
    #expect(!TrustStore.isDefaultBundle("/nonexistent/bundle.pem"))
  }

  @Test func hashedTrustDirectoryIsReadWhenAChainIsVerified() async throws {
    guard let server = try await NSDDoTServer.start(),
      let openssl = NSDDoTServer.executable("openssl")
    else { return }
    defer { server.stop() }
    // A trust directory as `update-ca-certificates` leaves it: PEM files plus subject-hash names.
    let trust = server.directory.appendingPathComponent("trust")
    try FileManager.default.createDirectory(at: trust, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      at: server.directory.appendingPathComponent("cert.pem"),
      to: trust.appendingPathComponent("lab.pem"))
    try await NSDDoTServer.run(openssl, ["rehash", trust.path])
    #expect(TrustStore.hasHashedNames("/nonexistent:\(trust.path)"))
    let (connection, info) = try await connect(
      server, context: try DoTClientContext(trustDirectory: trust.path))
    #expect(info.certificate.problems == [])
    connection.close()

    // Without hashed names the directory is not used: the lab certificate is unknown again.
    let empty = server.directory.appendingPathComponent("empty")
    try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
    #expect(!TrustStore.hasHashedNames(empty.path))
    let (other, otherInfo) = try await connect(
      server, context: try DoTClientContext(trustDirectory: empty.path))
    #expect(otherInfo.certificate.problems == ["self-signed"])
    other.close()
  }

  /// A trust bundle (SSL_CERT_FILE's case) is parsed off the start-up path into a store each
  /// connection verifies against; the extra CA file's certificates are in it too.
  @Test func bundleTrustIsBuiltOffTheStartPathAndUsed() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let labCert = server.directory.appendingPathComponent("cert.pem").path
    let bundle = try DoTClientContext(trustFile: labCert)
    #expect(bundle.trust.parsesBundle)
    for round in 0..<2 {  // the first may wait for the store, the second finds it built
      let (connection, info) = try await connect(server, context: bundle)
      #expect(info.certificate.problems == [], "connection \(round)")
      connection.close()
    }
    // A bundle without the lab certificate: unknown, unless it is the extra CA file.
    let other = server.directory.appendingPathComponent("other.pem")
    try Data("# no certificates\n".utf8).write(to: other)
    let (unknown, unknownInfo) = try await connect(server, context: try DoTClientContext(trustFile: other.path))
    #expect(unknownInfo.certificate.problems == ["self-signed"])
    unknown.close()
    let (extra, extraInfo) = try await connect(
      server, context: try DoTClientContext(extraCAFile: labCert, trustFile: other.path))
    #expect(extraInfo.certificate.problems == [])
    extra.close()
  }

  @Test func pipelinedQueriesAreAllAnswered() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let closes = DoTRecorder<EncryptedFailure>()
    let (connection, _) = try await connect(server, closes: closes)
    let questions: [(String, RRType, UInt16)] = [
      ("www.dot.test.", .a, 1), ("mail.dot.test.", .a, 2), ("www.dot.test.", .aaaa, 3),
      ("dot.test.", .soa, 4), ("ns1.dot.test.", .a, 5), ("nothere.dot.test.", .a, 6),
    ]
    let responses = try await withThrowingTaskGroup(of: (Int, Message).self) { group in
      for (index, (name, type, id)) in questions.enumerated() {
        let query = try dotQuery(name, type, id: id)
        group.addTask { (index, try await connection.query(query, timeout: .seconds(3))) }
      }
      var byIndex: [Int: Message] = [:]
      for try await (index, message) in group { byIndex[index] = message }
      return byIndex
    }
    #expect(responses.count == questions.count)
    for (index, (name, type, id)) in questions.enumerated() {
      let response = try #require(responses[index])
      #expect(response.header.id == id, "caller's ID restored")
      #expect(response.questions.first?.name == (try DNSName(name)))
      #expect(response.questions.first?.type == type)
    }
    #expect(responses[0]?.answers.map(\.rdata) == [.a(try #require(IPv4Address("192.0.2.1")))])
    #expect(responses[1]?.answers.map(\.rdata) == [.a(try #require(IPv4Address("192.0.2.25")))])
    #expect(responses[2]?.answers.map(\.rdata) == [.aaaa(try #require(IPv6Address("2001:db8::1")))])
    #expect(responses[3]?.answers.first?.type == .soa)
    #expect(responses[5]?.rcode == .nxDomain)
    // A later query reuses the same connection (T-14).
    let again = try await connection.query(
      try dotQuery("www.dot.test.", .a, id: 77), timeout: .seconds(3))
    #expect(again.header.id == 77 && again.answers.count == 1)
    connection.close()
    #expect(await closes.waitForFirst() == .cleanClose)
    #expect(!connection.isActive)
  }

  @Test func ticketFromOneConnectionResumesTheNext() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let tickets = DoTRecorder<[UInt8]>()
    let (first, firstInfo) = try await connect(server, tickets: tickets)
    #expect(!firstInfo.resumed)
    _ = try await first.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(3))
    let ticket = try #require(
      await tickets.waitForFirst(), "a TLS 1.3 session ticket was delivered")
    first.close()

    let (second, secondInfo) = try await connect(server, resumption: ticket)
    #expect(secondInfo.resumed)
    #expect(secondInfo.tlsVersion == "TLSv1.3")
    // The certificate result travels with the resumed session.
    #expect(secondInfo.certificate.problems.contains("self-signed"))
    let answer = try await second.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(3))
    #expect(answer.answers.count == 1)
    second.close()

    // A ticket that is not a session is ignored: a full handshake.
    let (third, thirdInfo) = try await connect(server, resumption: [1, 2, 3])
    #expect(!thirdInfo.resumed)
    third.close()
  }

  /// A probe's connection (OE-10) handshakes at low priority on the engine thread, then carries
  /// queries like any other.
  @Test func aProbeConnectionHandshakesAtLowPriorityThenAnswers() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let (connection, info) = try await HandshakePriority.$low.withValue(true) { try await connect(server) }
    #expect(info.tlsVersion == "TLSv1.3")
    #expect(connection.isActive)
    let answer = try await connection.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(3))
    #expect(answer.answers.count == 1)
    connection.close()
  }

  @Test func idleConnectionClosesCleanly() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let closes = DoTRecorder<EncryptedFailure>()
    // 3 s: with 200 ms the timer fired between connect and the first query in a TSan run, with
    // the two cores busy with the other suites, and the test task can resume seconds late there.
    let (connection, _) = try await connect(server, idleTimeout: .seconds(3), closes: closes)
    _ = try await connection.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(3))
    #expect(await closes.waitForFirst(seconds: 15) == .cleanClose)
    #expect(closes.all.count == 1)
    #expect(!connection.isActive)
    await #expect(throws: TransportError.closed) {
      try await connection.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(1))
    }
  }

  @Test func serverShutdownWhileIdleIsACleanClose() async throws {
    guard let server = try await NSDDoTServer.start() else { return }
    defer { server.stop() }
    let closes = DoTRecorder<EncryptedFailure>()
    let (connection, _) = try await connect(server, closes: closes)
    _ = try await connection.query(try dotQuery("www.dot.test.", .a), timeout: .seconds(3))
    server.stop()
    // NSD closes its connections on shutdown with nothing outstanding: a clean close.
    #expect(await closes.waitForFirst(seconds: 3) == .cleanClose)
  }
}

/// Failures that need no DNS server: nothing listening, a listener that never speaks.
@Suite struct DoTConnectFailureTests {
  let group = MultiThreadedEventLoopGroup.singleton

  private func attempt(
    _ endpoint: ServerEndpoint, context: DoTClientContext? = nil,
    handshakeTimeout: TimeAmount = .seconds(2)
  ) async -> EncryptedFailure? {
    do {
      let (connection, _) = try await DoTConnection.connect(
        to: endpoint, expectedName: nil, context: try context ?? DoTClientContext(),
        resumption: nil,
        connectTimeout: .seconds(2), handshakeTimeout: handshakeTimeout, idleTimeout: .seconds(5),
        onTicket: { _ in }, onClose: { _ in })
      connection.close()
      return nil
    } catch let failure as EncryptedFailure {
      return failure
    } catch {
      return .tlsError("\(error)")
    }
  }

  @Test func nothingListeningIsRefused() async throws {
    // No test listens on this loopback address.
    let endpoint = try #require(ServerEndpoint(ip: "127.53.200.250", port: 853))
    let failure = await attempt(endpoint)
    #expect(failure == .refused)
    #expect(failure?.className == "refused")
  }

  @Test func silentServerIsAHandshakeTimeout() async throws {
    let listener = try await SilentTCPListener()
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: listener.port))
    let context = try DoTClientContext()
    let clock = ContinuousClock()
    let start = clock.now
    let failure = await attempt(endpoint, context: context, handshakeTimeout: .milliseconds(300))
    // Timed by when the listener saw the connection close, on its event loop: the test task itself
    // may resume seconds later when other tests hold the cooperative pool (seen under ASan).
    let closedAt = await listener.firstClose()
    await listener.stop()
    #expect(failure == .handshakeTimeout)
    let elapsed = try #require(closedAt, "the client never closed the connection") - start
    // Generous upper bound: two cores shared with other builds.
    #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(3), "closed after \(elapsed)")
  }

  @Test func aStalledTCPConnectEndsWithTheWholeAttemptsTimeout() async throws {
    // The RFC 9539 `timeout` (here 500 ms) bounds connect plus handshake: a connect timeout of
    // 120 s must not keep the attempt, and the resolutions waiting on it, for 120 s.
    let listener = try FullBacklogListener()
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: listener.port))
    let context = try DoTClientContext()
    let clock = ContinuousClock()
    let start = clock.now
    var failure: EncryptedFailure? = nil
    do throws(EncryptedFailure) {
      let (connection, _) = try await DoTConnection.connect(
        to: endpoint, expectedName: nil, context: context, resumption: nil,
        connectTimeout: .seconds(120), handshakeTimeout: .milliseconds(500), idleTimeout: .seconds(5),
        onTicket: { _ in }, onClose: { _ in })
      connection.close()
    } catch {
      failure = error
    }
    let elapsed = clock.now - start
    withExtendedLifetime(listener) {}
    #expect(failure == .tcpTimeout)
    // 120 s before the attempt had one deadline. The bound is far from both: the test task itself
    // can resume late when other tests hold the cooperative pool (14.8 s once under ASan on CI).
    #expect(elapsed >= .milliseconds(400) && elapsed < .seconds(60), "failed after \(elapsed)")
  }

  @Test func failureClassNames() {
    #expect(EncryptedFailure.tcpTimeout.className == "tcp-timeout")
    #expect(EncryptedFailure.handshakeTimeout.className == "handshake-timeout")
    #expect(EncryptedFailure.tlsAlert("handshake failure").className == "tls-alert")
    #expect(EncryptedFailure.alpnMismatch("h2").className == "alpn-mismatch")
    #expect(EncryptedFailure.tlsError("x").className == "tls-error")
    #expect(EncryptedFailure.resetWithQueriesOutstanding.className == "reset")
    #expect(EncryptedFailure.cleanClose.className == "clean-close")
  }
}

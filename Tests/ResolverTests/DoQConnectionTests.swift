import CNgtcp2Shim
import COpenSSL
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

/// DoQ client against the aioquic fixture server on 127.0.0.1 (`Fixtures/doq_server.py`).
@Suite(.serialized) struct DoQConnectionTests {
  let group = MultiThreadedEventLoopGroup.singleton

  func connector() throws -> DoQConnector { try DoQConnector(extraCAFile: nil, group: group) }

  func connect(
    _ endpoint: ServerEndpoint, log: DoQCallbackLog, expectedName: DNSName? = nil, resumption: [UInt8]? = nil,
    handshakeTimeout: TimeAmount = .seconds(3), idleTimeout: TimeAmount = .seconds(30)
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo) {
    let connector: DoQConnector
    do { connector = try self.connector() } catch { throw .tlsError("\(error)") }
    return try await connector.connect(
      to: endpoint, expectedName: expectedName, resumption: resumption, handshakeTimeout: handshakeTimeout,
      idleTimeout: idleTimeout, onTicket: log.onTicket, onClose: log.onClose)
  }

  @Test func fixtureAvailableOnCI() {
    if !DoQFixtureServer.available {
      if ProcessInfo.processInfo.environment["CI"] == "true" {
        Issue.record("python3 with aioquic and dnspython is required for the DoQ tests (pip install aioquic dnspython)")
      } else {
        print("DoQ tests skipped: python3 cannot import aioquic/dnspython (pip install aioquic dnspython)")
      }
    }
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func handshakeAndConcurrentQueries() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let log = DoQCallbackLog()
    let (session, info) = try await connect(try server.endpoint, log: log)
    #expect(info.alpn == "doq")
    #expect(info.tlsVersion == "TLSv1.3")
    #expect(info.resumed == false)
    #expect(info.earlyDataAccepted == nil)
    #expect(info.certificate.problems.contains("self-signed"))
    #expect(info.certificate.problems.contains("wrong-name"))  // checked against 127.0.0.1
    #expect(info.certificate.subject == "/CN=doq.test")
    #expect(info.certificate.notAfter != nil)
    #expect(session.isActive)

    let ids: [UInt16] = [7, 4242, 9, 65000, 1]
    let responses = try await withThrowingTaskGroup(of: (UInt16, Message).self) { tasks in
      for (i, id) in ids.enumerated() {
        let query = try doqTestQuery("q\(i).example.", id: id)
        tasks.addTask { (id, try await session.query(query, timeout: .seconds(3))) }
      }
      var all: [(UInt16, Message)] = []
      for try await r in tasks { all.append(r) }
      return all
    }
    #expect(responses.count == ids.count)
    for (id, response) in responses {
      #expect(response.header.id == id)  // the caller's ID is restored
      #expect(response.answers.count == 1)
      #expect(response.answers.first?.type == .a)
    }
    // The server closes the connection on a non-zero ID; every query reached it with ID 0.
    // The server's stdout is read asynchronously: give the last lines a moment to arrive.
    func queryLines() -> [Substring] { server.log.split(separator: "\n").filter { $0.hasPrefix("QUERY ") } }
    for _ in 0..<100 where queryLines().count < ids.count { try await Task.sleep(for: .milliseconds(20)) }
    let queryLines = queryLines()
    #expect(queryLines.count == ids.count)
    #expect(queryLines.allSatisfy { $0.hasPrefix("QUERY 0 ") })
    session.close()
  }

  /// A probe's connection (OE-10): its first flight and handshake run at low priority on the
  /// engine thread, then it carries queries like any other.
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func aProbeConnectionHandshakesAtLowPriorityThenAnswers() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let endpoint = try server.endpoint
    let (session, info) = try await HandshakePriority.$low.withValue(true) {
      try await connect(endpoint, log: DoQCallbackLog())
    }
    #expect(info.alpn == "doq")
    #expect(session.isActive)
    let response = try await session.query(try doqTestQuery("probe.example.", id: 77), timeout: .seconds(3))
    #expect(response.header.id == 77)
    #expect(response.answers.first?.type == .a)
    session.close()
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func certificateCheckedAgainstExpectedName() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let (session, info) = try await connect(
      try server.endpoint, log: DoQCallbackLog(), expectedName: try DNSName("doq.test."))
    #expect(info.certificate.problems == ["self-signed"])
    session.close()
  }

  /// The extra CA file is in the store every handshake verifies against, the first and the ones
  /// after it.
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func extraCAFileMakesTheCertificateTrusted() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let path = try #require(server.certificatePath)
    let connector = try DoQConnector(extraCAFile: path, group: group)
    for round in 0..<2 {
      let (session, info) = try await connector.connect(
        to: try server.endpoint, expectedName: try DNSName("doq.test."), resumption: nil,
        handshakeTimeout: .seconds(3), idleTimeout: .seconds(30), onTicket: { _ in }, onClose: { _ in })
      #expect(info.certificate.problems == [], "handshake \(round)")
      session.close()
    }
  }

  /// DoQ verifies against the `TrustStore` it is given (OpenSSL's, the one DoT uses in a stack):
  /// a store of the fixture's certificate alone makes it valid, an empty one leaves it
  /// self-signed. Neither result can come from any other trust (the system's, GnuTLS's).
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func verdictComesFromTheGivenTrustStore() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let fixtureCA = try #require(server.certificatePath)
    let empty = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-doq-empty-\(getpid()).pem")
    try Data("# no certificates\n".utf8).write(to: empty)
    defer { try? FileManager.default.removeItem(at: empty) }
    for (file, expected) in [(fixtureCA, [String]()), (empty.path, ["self-signed"])] {
      let connector = try DoQConnector(trust: try TrustStore(trustFile: file), group: group)
      let (session, info) = try await connector.connect(
        to: try server.endpoint, expectedName: try DNSName("doq.test."), resumption: nil,
        handshakeTimeout: .seconds(3), idleTimeout: .seconds(30), onTicket: { _ in }, onClose: { _ in })
      #expect(info.certificate.problems == expected, "trusting \(file)")
      #expect(info.certificate.subject?.hasPrefix("/") == true)  // OpenSSL's one-line form, as DoT's
      session.close()
    }
  }

  /// DoQ applies OpenSSL's security level as libssl does for DoT: a trusted certificate with a
  /// 1024-bit RSA key fails it (Debian's level is 2) and reads with OpenSSL's own text, as over
  /// DoT (`DoTHandshakeVariantTests.weakKeyFailsTheSecurityLevel`). A connection resumed from that
  /// handshake's ticket reports the same verdict, the code kept in the resumption blob.
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func weakKeyFailsTheSecurityLevel() async throws {
    let server = try await DoQFixtureServer(flags: ["--weak-key"])
    defer { server.stop() }
    let certificate: String = try #require(server.certificatePath)
    let trust = try TrustStore(trustFile: certificate)
    try #require(
      trust.securityLevel >= 2, "OpenSSL's security level here is \(trust.securityLevel); RSA-1024 passes below 2")
    let context = try DoQClientContext(trust: trust)
    let first = DoQCallbackLog()
    let (connection, info, _) = try await DoQConnection.connect(
      to: try server.endpoint, expectedName: try DNSName("doq.test."), context: context, group: group,
      resumption: nil, handshakeTimeout: .seconds(3), idleTimeout: .seconds(30), onTicket: first.onTicket,
      onClose: first.onClose)
    #expect(info.certificate.problems == ["other:EE certificate key too weak"])
    _ = try await connection.query(try doqTestQuery("a.example.", id: 1), timeout: .seconds(3))
    #expect(await first.wait { !$0.tickets.isEmpty })
    connection.close()
    let ticket = try #require(first.tickets.first)
    let (resumed, again, _) = try await DoQConnection.connect(
      to: try server.endpoint, expectedName: try DNSName("doq.test."), context: context, group: group,
      resumption: ticket, handshakeTimeout: .seconds(3), idleTimeout: .seconds(30), onTicket: { _ in },
      onClose: { _ in })
    #expect(again.resumed)
    #expect(again.certificate.problems == ["other:EE certificate key too weak"])
    resumed.close()
  }

  /// A CA bundle (`SSL_CERT_FILE`'s case) is parsed after the trust store is made, on a thread of
  /// its own, and a handshake that comes first waits for it, suspended: neither making the store
  /// nor the exchange engine's thread, which carries every Do53 exchange too, pays for the parse
  /// (GnuTLS's DoQ trust list was once built on that thread). The extra CA file's certificates
  /// are in the store built later.
  @Test(
    .enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"),
    .enabled(if: FileManager.default.fileExists(atPath: systemBundle), "needs Debian's ca-certificates"))
  func earlyHandshakeDoesNotHoldTheExchangeThread() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let fixtureCA = try #require(server.certificatePath)
    // A bundle OpenSSL takes a while to parse: Debian's 20 times over.
    let system = try String(contentsOfFile: Self.systemBundle, encoding: .utf8)
    let bundle = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-doq-ca-\(getpid()).pem")
    try String(repeating: system, count: 20).write(to: bundle, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: bundle) }

    let clock = ContinuousClock()
    let loadStart = clock.now
    let trust = try TrustStore(extraCAFile: fixtureCA, trustFile: bundle.path)
    let made = clock.now - loadStart
    #expect(trust.parsesBundle)
    let context = try DoQClientContext(trust: trust)
    let loaded = Task {
      _ = await trust.store()
      return clock.now - loadStart
    }
    let watch = EngineStallWatch()
    let watching = Task { await watch.run() }
    let (session, info, _) = try await DoQConnection.connect(
      to: try server.endpoint, expectedName: try DNSName("doq.test."), context: context, group: group,
      resumption: nil, handshakeTimeout: .seconds(30), idleTimeout: .seconds(30), onTicket: { _ in },
      onClose: { _ in })
    watch.stop()
    let longest = await watching.value
    let loadTime = await loaded.value
    #expect(info.certificate.problems == [])  // verified against the store with the extra CA in it
    // The store took `loadTime` to build; the thread never stopped for more than a fraction of that.
    #expect(longest < loadTime / 3, "exchange thread held \(longest); the trust store took \(loadTime)")
    #expect(made < loadTime / 3, "making the store took \(made) of the \(loadTime) the bundle took")
    session.close()
  }

  static let systemBundle = "/etc/ssl/certs/ca-certificates.crt"

  @Test func unreadableExtraCAFileIsAnErrorAtOnce() {
    #expect(throws: EncryptedFailure.self) {
      _ = try DoQConnector(extraCAFile: "/nonexistent/ca.pem", group: group)
    }
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func ticketResumesSecondConnection() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let first = DoQCallbackLog()
    let (session, info) = try await connect(try server.endpoint, log: first)
    #expect(info.resumed == false)
    _ = try await session.query(try doqTestQuery("a.example.", id: 1), timeout: .seconds(3))
    #expect(await first.wait { !$0.tickets.isEmpty })
    guard let ticket = first.tickets.first else { throw DoQTestError.noTicket }
    session.close()

    let second = DoQCallbackLog()
    let (resumed, resumedInfo) = try await connect(try server.endpoint, log: second, resumption: ticket)
    #expect(resumedInfo.resumed)
    #expect(resumedInfo.alpn == "doq")
    // No Certificate message in a resumed handshake: the verdict travels in the ticket.
    #expect(resumedInfo.certificate.problems == info.certificate.problems)
    let response = try await resumed.query(try doqTestQuery("b.example.", id: 2), timeout: .seconds(3))
    #expect(response.header.id == 2)
    #expect(await second.wait { !$0.tickets.isEmpty })  // a fresh ticket on the resumed connection too (OE-23)
    resumed.close()
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func timedOutQueryIsCancelledAtItsOwnDeadlineWhileOthersAreAnswered() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let log = DoQCallbackLog()
    let (session, _) = try await connect(try server.endpoint, log: log)
    let longQuery = try doqTestQuery("silent-long.example.", id: 1)
    let long = Task { () async throws(TransportError) -> Message in
      try await session.query(longQuery, timeout: .seconds(20))
    }
    #expect(await server.waitForLine(prefix: "QUERY 0 silent-long."))
    // Sent later with a shorter timeout: it fails at its own deadline, not the earlier query's.
    await #expect(throws: TransportError.timeout) {
      _ = try await session.query(try doqTestQuery("silent-short.example.", id: 2), timeout: .milliseconds(300))
    }
    #expect(await server.waitForLine(prefix: "STOP 3"))  // DOQ_REQUEST_CANCELLED for its stream (T-28)
    let answered = try await session.query(try doqTestQuery("a.example.", id: 3), timeout: .seconds(3))
    #expect(answered.header.id == 3)
    #expect(answered.answers.count == 1)
    #expect(session.isActive)
    session.close()
    let longResult = await long.result
    #expect(throws: TransportError.closed) { try longResult.get() }  // still outstanding until the close
  }

  /// T-39: 17 queries time out together and are cancelled. A server that resets them on
  /// STOP_SENDING (RFC 9000 §3.5) keeps the connection; one that leaves them dangling has it
  /// closed with DOQ_PROTOCOL_ERROR once they are old enough and a later query times out.
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"), arguments: [false, true])
  func danglingStreamsPastTheCapCloseTheConnection(serverIgnoresStopSending: Bool) async throws {
    let server = try await DoQFixtureServer(flags: serverIgnoresStopSending ? ["--ignore-stop-sending"] : [])
    defer { server.stop() }
    let log = DoQCallbackLog()
    let (session, _) = try await connect(try server.endpoint, log: log)
    let cap = DoQSocketSession.maxDanglingStreams
    let timeouts = await withTaskGroup(of: Bool.self) { group in
      for i in 0...cap {
        group.addTask {
          do {
            let query = try doqTestQuery("silent\(i).example.", id: UInt16(i))
            _ = try await session.query(query, timeout: .milliseconds(200))
            return false
          } catch { return error as? TransportError == .timeout }
        }
      }
      return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
    }
    #expect(timeouts == cap + 1)
    #expect(await server.waitForLine(prefix: serverIgnoresStopSending ? "IGNORED-STOP" : "STOP 3"))
    // A cancelled stream still open after 2 s (or three PTOs, longer where a sanitizer slows the
    // server) is dangling; the count is taken when a query times out. One more timeout every
    // half second until the session closes (at most 20 s), or eight of them for the control.
    let clock = ContinuousClock()
    let giveUp = clock.now + .seconds(20)
    var more = 0
    repeat {
      try await Task.sleep(for: .milliseconds(500))
      more += 1
      _ = try? await session.query(try doqTestQuery("silent-more\(more).example.", id: 99), timeout: .milliseconds(200))
    } while session.isActive && clock.now < giveUp && (serverIgnoresStopSending || more < 8)
    if serverIgnoresStopSending {
      #expect(await log.wait { !$0.closes.isEmpty })
      guard case .danglingStreams(let n)? = log.closes.first else {
        Issue.record("closes: \(log.closes)")
        return
      }
      #expect(n > cap)
      #expect(log.closes.count == 1)
      #expect(!session.isActive)
      #expect(await server.waitForLine(prefix: "CLOSE 2"))  // DOQ_PROTOCOL_ERROR on the wire
    } else {
      #expect(session.isActive, "a server that reset its cancelled streams lost its connection")
      let answered = try await session.query(try doqTestQuery("a.example.", id: 100), timeout: .seconds(3))
      #expect(answered.answers.count == 1)
      #expect(log.closes.isEmpty)
      session.close()
    }
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func closeSendsNoErrorAndReportsCleanClose() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let log = DoQCallbackLog()
    let (session, _) = try await connect(try server.endpoint, log: log)
    _ = try await session.query(try doqTestQuery("a.example.", id: 3), timeout: .seconds(3))
    session.close()
    #expect(await log.wait { !$0.closes.isEmpty })
    #expect(log.closes == [.cleanClose])
    #expect(!session.isActive)
    #expect(await server.waitForLine(prefix: "CLOSE 0"))  // DOQ_NO_ERROR on the wire
    await #expect(throws: TransportError.closed) {
      _ = try await session.query(try doqTestQuery("a.example.", id: 4), timeout: .seconds(1))
    }
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func idleTimeoutIsCleanClose() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let log = DoQCallbackLog()
    let (session, _) = try await connect(try server.endpoint, log: log, idleTimeout: .milliseconds(400))
    #expect(await log.wait(seconds: 5) { !$0.closes.isEmpty })
    #expect(log.closes == [.cleanClose])
    #expect(!session.isActive)
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func streamResetFailsQueryConnectionSurvives() async throws {
    let server = try await DoQFixtureServer(flags: ["--reset-streams"])
    defer { server.stop() }
    let log = DoQCallbackLog()
    let (session, _) = try await connect(try server.endpoint, log: log)
    for id: UInt16 in [5, 6] {
      await #expect(throws: TransportError.closed) {
        _ = try await session.query(try doqTestQuery("r.example.", id: id), timeout: .seconds(3))
      }
    }
    #expect(session.isActive)
    #expect(log.closes.isEmpty)
    session.close()
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func nonZeroResponseIDIsMalformed() async throws {
    let server = try await DoQFixtureServer(flags: ["--bad-id"])
    defer { server.stop() }
    let (session, _) = try await connect(try server.endpoint, log: DoQCallbackLog())
    let query = try doqTestQuery("x.example.", id: 8)
    do {
      _ = try await session.query(query, timeout: .seconds(3))
      Issue.record("a response with a non-zero ID was accepted")
    } catch {
      guard case .malformed = error else {
        Issue.record("expected .malformed, got \(error)")
        return
      }
    }
    session.close()
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func wrongLengthPrefixIsMalformed() async throws {
    let server = try await DoQFixtureServer(flags: ["--bad-length"])
    defer { server.stop() }
    let (session, _) = try await connect(try server.endpoint, log: DoQCallbackLog())
    let query = try doqTestQuery("x.example.", id: 8)
    do {
      _ = try await session.query(query, timeout: .seconds(3))
      Issue.record("a response with a wrong length prefix was accepted")
    } catch {
      guard case .malformed = error else {
        Issue.record("expected .malformed, got \(error)")
        return
      }
    }
    session.close()
  }

  /// Nothing listens: the kernel answers with ICMP port unreachable, seen as ECONNREFUSED → `.refused`,
  /// long before the handshake timeout.
  @Test func closedPortIsRefused() async throws {
    let probe = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
    let port = probe.localAddress?.port ?? 9
    try await probe.close()
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: port))
    let started = Date()
    do {
      _ = try await connect(endpoint, log: DoQCallbackLog(), handshakeTimeout: .seconds(10))
      Issue.record("connected to a closed port")
    } catch {
      #expect(error == .refused)
    }
    // Well before the timeout (with room for a test task that resumes late on a loaded machine).
    #expect(Date().timeIntervalSince(started) < 5)
  }

  /// A socket that reads and never answers: the handshake fails at the given timeout.
  @Test func silentPortTimesOut() async throws {
    let sink = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
    defer { sink.close(promise: nil) }
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: sink.localAddress?.port ?? 9))
    let started = Date()
    do {
      _ = try await connect(endpoint, log: DoQCallbackLog(), handshakeTimeout: .milliseconds(600))
      Issue.record("connected to a silent port")
    } catch {
      #expect(error == .handshakeTimeout)
    }
    let elapsed = Date().timeIntervalSince(started)
    // The upper bound leaves room for a test task that resumes late (seen seconds late under
    // the sanitizers); the error itself says it was the handshake timer.
    #expect(elapsed >= 0.5 && elapsed < 5)
  }
}

/// Measures the longest wait for a turn of the exchange engine's thread (queued no-ops, 1 ms apart).
final class EngineStallWatch: Sendable {
  private let stopped = Mutex(false)

  func stop() { stopped.withLock { $0 = true } }

  func run() async -> Duration {
    let clock = ContinuousClock()
    var longest = Duration.zero
    while !stopped.withLock({ $0 }) {
      // The wait is timed on the engine's thread when the block runs, so a busy cooperative pool
      // (tests run in parallel on two cores) delaying the resumption is not counted as a stall.
      let start = clock.now
      let ran: ContinuousClock.Instant = await withCheckedContinuation { done in
        UDPExchangeEngine.shared.execute(queued: true) { done.resume(returning: clock.now) }
      }
      longest = max(longest, ran - start)
      try? await Task.sleep(for: .milliseconds(1))
    }
    return longest
  }
}

/// The verdict bits the DoQ engine and its resumption blobs carry (no server needed).
@Suite struct DoQCertificateVerdictTests {
  /// OpenSSL's code in the upper bits reads as DoT reports it; a blob from before codes were kept
  /// (the bit alone) reads "other:verification failed"; the other names are unchanged by a code.
  @Test func otherCarriesOpenSSLsText() {
    let code = UInt32(X509_V_ERR_EE_KEY_TOO_SMALL) << UInt32(DOQ_CERT_OTHER_CODE_SHIFT)
    let withCode = DoQCertificateVerdict.check(
      problems: UInt32(DOQ_CERT_OTHER) | UInt32(DOQ_CERT_WRONG_NAME) | code, subject: nil, notAfter: -1)
    #expect(withCode.problems == ["wrong-name", "other:EE certificate key too weak"])
    let old = DoQCertificateVerdict.check(problems: UInt32(DOQ_CERT_OTHER), subject: nil, notAfter: -1)
    #expect(old.problems == ["other:verification failed"])
    #expect(DoQCertificateVerdict.check(problems: 0, subject: nil, notAfter: -1).problems.isEmpty)
  }
}

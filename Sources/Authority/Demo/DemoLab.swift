import Foundation
import Logging
import NIOCore
import Resolver

/// The demo's DNS hierarchy running in this process on 127.77.0.0/16: one Do53 responder per
/// server plus whatever each serves on the encrypted port (DoT, DoQ, silent, nothing).
public final class DemoLab: Sendable {
  public let servers: [DemoServer]
  /// Port of every Do53 responder and of every DoT/DoQ one.
  public let do53Port: Int
  public let encryptedPort: Int
  /// Root hints for the resolver (pointing at the demo root).
  public let rootHintsText: String
  /// The demo CA (PEM): give it to the resolver so valid certificates show as valid.
  public let caPEM: String
  private let stoppers: [@Sendable () async -> Void]

  private init(
    servers: [DemoServer], do53Port: Int, encryptedPort: Int, rootHints: String, caPEM: String,
    stoppers: [@Sendable () async -> Void]
  ) {
    self.servers = servers
    self.do53Port = do53Port
    self.encryptedPort = encryptedPort
    self.rootHintsText = rootHints
    self.caPEM = caPEM
    self.stoppers = stoppers
  }

  /// Starts every server. Ports: `ports` if given, else (10053, 10853) and, when those are taken,
  /// a few random pairs. `zones` replaces the generated zone texts (by origin).
  public static func start(
    group: any EventLoopGroup, servers: [DemoServer] = DemoServer.all, ports: (Int, Int)? = nil,
    zones: [String: String]? = nil, logger: Logger
  ) async throws -> DemoLab {
    let texts = zones ?? DemoZones.texts(for: servers)
    var loaded: [String: Zone] = [:]
    for (origin, text) in texts {
      let name = try DNSName(origin)
      loaded[origin] = try Zone(origin: name, text: text)
    }
    for s in servers where loaded[s.zone] == nil { throw DemoError.missingZone(s.zone) }
    let ca = try CertificateFactory()
    var attempts: [(Int, Int)] = ports.map { [$0] } ?? [(10053, 10853)]
    if ports == nil {
      for _ in 0..<4 { attempts.append((Int.random(in: 20_000...39_999), Int.random(in: 40_000...59_999))) }
    }
    var lastError: any Error = DemoError.noPorts
    for (p53, p853) in attempts {
      do {
        let stoppers = try await startAll(
          group: group, servers: servers, zones: loaded, ca: ca, do53Port: p53, encryptedPort: p853)
        logger.info("demo lab up: \(servers.count) servers on 127.77.0.0/16, Do53 port \(p53), DoT/DoQ port \(p853)")
        return DemoLab(
          servers: servers, do53Port: p53, encryptedPort: p853, rootHints: DemoZones.rootHints(for: servers),
          caPEM: ca.caPEM, stoppers: stoppers)
      } catch {
        lastError = error
        logger.debug("demo ports \(p53)/\(p853) unusable: \(error)")
      }
    }
    throw lastError
  }

  /// Stops every responder; nothing of the lab is left listening.
  public func stop() async {
    for stop in stoppers { await stop() }
  }

  private static func startAll(
    group: any EventLoopGroup, servers: [DemoServer], zones: [String: Zone], ca: CertificateFactory, do53Port: Int,
    encryptedPort: Int
  ) async throws -> [@Sendable () async -> Void] {
    var stoppers: [@Sendable () async -> Void] = []
    do {
      for s in servers {
        guard let zone = zones[s.zone] else { throw DemoError.missingZone(s.zone) }
        let engine = AuthorityEngine(zones: [zone])
        let do53 = try await Do53Responder.start(
          group: group, host: s.address, port: do53Port, engine: engine, delay: s.delay)
        stoppers.append { await do53.stop() }
        stoppers += try await startDoT(s, group: group, engine: engine, ca: ca, port: encryptedPort)
        stoppers += try await startDoQ(s, group: group, engine: engine, ca: ca, port: encryptedPort)
      }
      return stoppers
    } catch {
      for stop in stoppers { await stop() }
      throw error
    }
  }

  static func identity(_ s: DemoServer, _ mode: Port853, ca: CertificateFactory) throws -> CertifiedKey {
    var host = s.nsName
    if host.hasSuffix(".") { host.removeLast() }
    return try ca.issue(name: host, ip: s.address, expired: mode == .expired)
  }

  static func startDoT(
    _ s: DemoServer, group: any EventLoopGroup, engine: AuthorityEngine, ca: CertificateFactory, port: Int
  )
    async throws -> [@Sendable () async -> Void]
  {
    switch s.dot {
    case .refused:
      return []
    case .silent:
      let l = try await SilentTCPListener.start(group: group, host: s.address, port: port)
      return [{ await l.stop() }]
    case .valid, .expired, .flaky:
      // Each advertises an edns-tcp-keepalive of 30 s, as BIND 9.18 does by default (RFC 7828).
      let behaviour = DoTBehaviour(closeConnectionAfterQueries: s.dot == .flaky ? 3 : nil, keepalive: 300)
      let r = try await DoTResponder.start(
        group: group, host: s.address, port: port, identity: identity(s, s.dot, ca: ca), engine: engine,
        behaviour: behaviour)
      return [{ await r.stop() }]
    }
  }

  static func startDoQ(
    _ s: DemoServer, group: any EventLoopGroup, engine: AuthorityEngine, ca: CertificateFactory, port: Int
  )
    async throws -> [@Sendable () async -> Void]
  {
    switch s.doq {
    case .refused:
      return []
    case .silent:
      let l = try await SilentUDPListener.start(group: group, host: s.address, port: port)
      return [{ await l.stop() }]
    case .valid, .expired, .flaky:
      let behaviour =
        s.doq == .flaky ? DoQBehaviour(closeConnectionAfterQueries: 4, resetEveryNthStream: 7) : DoQBehaviour()
      let r = try await DoQResponder.start(
        group: group, host: s.address, port: port, identity: identity(s, s.doq, ca: ca), behaviour: behaviour
      ) { query in engine.respond(to: query, overTCP: true) }
      return [{ await r.stop() }]
    }
  }
}

/// Why the demo lab could not start.
public enum DemoError: Error, Sendable, CustomStringConvertible {
  case missingZone(String)
  case noPorts
  case zonesDirectory(String)

  public var description: String {
    switch self {
    case .missingZone(let z): "no zone data for \(z)"
    case .noPorts: "no free ports for the demo servers"
    case .zonesDirectory(let why): why
    }
  }
}

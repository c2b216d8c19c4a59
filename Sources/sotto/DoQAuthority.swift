import ArgumentParser
import Authority
import Foundation
import NIOCore
import NIOPosix
import Resolver

/// `sotto doq-authority` (hidden): one zone served over DNS-over-QUIC by Sotto's own C responder,
/// on the NSD lab's addresses. `make bench` uses it in place of `Lab/doq_server.py` (Python, whose
/// CPU per query would otherwise be measured as the resolver's encryption cost); the integration
/// tests keep the third-party aioquic server.
struct DoQAuthority: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "doq-authority",
    abstract: "Serve one zone over DoQ (RFC 9250) on ADDRESS:PORT until SIGINT or SIGTERM (for the bench lab).",
    shouldDisplay: false)

  @Option(name: .long, help: "IP address to bind.")
  var address: String

  @Option(name: .long, help: "UDP port.")
  var port: Int = 853

  @Option(name: .long, help: "Origin of the zone, e.g. doq.test.")
  var zone: String

  @Option(name: .long, help: "Zone file (master-file format).")
  var zonefile: String

  @Option(name: .long, help: "PEM: the leaf certificate followed by its chain.")
  var cert: String

  @Option(name: .long, help: "PEM private key of the certificate.")
  var key: String

  @Flag(name: .long, help: "Share the port with a later socket (SO_REUSEPORT) but receive every datagram.")
  var reuseport = false

  @Option(name: .long, help: "Seconds before an idle connection is closed.")
  var idleTimeout: Double = 30

  func validate() throws {
    guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1...65535, got \(port)") }
    guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
  }

  func run() async throws {
    let origin: DNSName
    do {
      origin = try DNSName(zone)
    } catch {
      throw ValidationError("--zone \(zone): \(error)")
    }
    let engine = AuthorityEngine(zones: [try Zone(origin: origin, text: Self.read(zonefile, "--zonefile"))])
    let identity = CertifiedKey(
      certificatePEM: try Self.read(cert, "--cert"), privateKeyPEM: try Self.read(key, "--key"))
    Serve.takeOverConcurrency(threads: 1)
    let responder = try await DoQResponder.start(
      group: MultiThreadedEventLoopGroup.singleton, host: address, port: port, identity: identity,
      idleTimeout: .nanoseconds(Int64(idleTimeout * 1e9)), steerReusePort: reuseport
    ) { query in engine.respond(to: query, overTCP: true) }
    print("DoQ authority for \(origin) on \(address):\(port) reuseport=\(reuseport)")
    fflush(nil)
    await Serve.waitForTermination()
    if let s = try? await responder.statistics() {
      print(
        "stopped: \(s.connectionsAccepted) connections, \(s.handshakesCompleted) handshakes, \(s.queriesAnswered) queries, \(s.datagramsDropped) datagrams dropped"
      )
    }
    await responder.stop()
  }

  static func read(_ path: String, _ option: String) throws -> String {
    do {
      return try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      throw ValidationError("\(option): cannot read \(path): \(error.localizedDescription)")
    }
  }
}

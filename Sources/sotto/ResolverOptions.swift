import ArgumentParser
import Foundation
import Logging
import NIOCore
import Resolver

/// Options shared by every command that runs a resolver.
struct ResolverOptions: ParsableArguments {
  @Option(name: .long, help: "Root hints file in named.root format (default: the built-in IANA root servers).")
  var rootHints: String?

  @Flag(name: .long, help: "Allow querying authoritative servers on loopback, unspecified and link-local addresses (labs).")
  var allowLoopback = false

  @Option(name: .long, help: "Destination port for Do53 to every authoritative server.")
  var do53Port: Int = 53

  @Flag(name: .long, help: "Send full query names to every server (disable RFC 9156 QNAME minimisation).")
  var noQnameMinimisation = false

  @Flag(name: .long, help: "Do not use IPv6 towards authoritative servers.")
  var noIPv6 = false

  @Flag(name: .long, help: "Do not use IPv4 towards authoritative servers.")
  var noIPv4 = false

  @Option(name: .long, help: "Maximum number of cache entries.")
  var cacheSize: Int = 100_000

  @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
  var logLevel: String = "warning"

  @Flag(name: .long, help: "Turn off opportunistic encryption (RFC 9539): Do53 only, no probes.")
  var noEncryption = false

  @Option(name: .long, help: "Keep the per-server encryption state in this JSON file (loaded at start, saved periodically and at exit).")
  var stateFile: String?

  @Option(name: .long, help: "Destination port for DoT to every authoritative server.")
  var encryptedPort: Int = 853

  @Option(name: .long, help: "RFC 9539 timeout: seconds an encrypted handshake may take.")
  var probeTimeout: Double = 4

  @Option(name: .long, help: "RFC 9539 damping: seconds a failed probe is remembered before probing again.")
  var damping: Double = 86_400

  @Option(name: .long, help: "RFC 9539 persistence: seconds a working encrypted transport is remembered after its last response.")
  var persistence: Double = 259_200

  @Option(name: .long, help: "Concurrent encrypted handshakes at most (all servers).")
  var maxProbes: Int = 10

  @Option(name: .long, help: "Open encrypted sessions at most; the least recently active is closed first.")
  var maxSessions: Int = 100

  @Option(name: .long, help: "Seconds an idle encrypted session stays open.")
  var sessionIdleTimeout: Double = 30

  @Option(name: .long, help: "Extra CA file used only to classify server certificates (never to reject them).")
  var tlsCAFile: String?

  @Option(name: .long, help: "Preferred encrypted transport when a server speaks both: doq or dot.")
  var prefer: String = "doq"

  @Flag(name: .long, help: "Do not probe or use DNS-over-TLS.")
  var noDot = false

  @Flag(name: .long, help: "Do not probe or use DNS-over-QUIC.")
  var noDoq = false

  func validate() throws {
    guard (1...65535).contains(do53Port) else { throw ValidationError("--do53-port must be 1-65535, got \(do53Port)") }
    guard cacheSize > 0 else { throw ValidationError("--cache-size must be positive, got \(cacheSize)") }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
    if noIPv4 && noIPv6 { throw ValidationError("--no-ipv4 and --no-ipv6 together leave no address family") }
    guard (1...65535).contains(encryptedPort) else {
      throw ValidationError("--encrypted-port must be 1-65535, got \(encryptedPort)")
    }
    guard probeTimeout > 0, probeTimeout <= 60 else {
      throw ValidationError("--probe-timeout must be in (0, 60] seconds, got \(probeTimeout)")
    }
    guard damping >= 0 else { throw ValidationError("--damping must not be negative, got \(damping)") }
    guard persistence >= 0 else { throw ValidationError("--persistence must not be negative, got \(persistence)") }
    guard maxProbes > 0 else { throw ValidationError("--max-probes must be positive, got \(maxProbes)") }
    guard maxSessions > 0 else { throw ValidationError("--max-sessions must be positive, got \(maxSessions)") }
    guard sessionIdleTimeout > 0 else {
      throw ValidationError("--session-idle-timeout must be positive, got \(sessionIdleTimeout)")
    }
    guard prefer == "doq" || prefer == "dot" else { throw ValidationError("--prefer must be doq or dot, got \(prefer)") }
    if let ca = tlsCAFile, !FileManager.default.isReadableFile(atPath: ca) {
      throw ValidationError("--tls-ca-file \(ca) cannot be read")
    }
  }

  /// Builds the resolver configuration, reading the root hints file if one is given.
  func configuration() throws -> ResolverConfiguration {
    var config = ResolverConfiguration()
    if let path = rootHints {
      guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("cannot read root hints file \(path)")
      }
      do {
        config.rootHints = try RootHints(fileText: text)
      } catch {
        throw ValidationError("\(path): \(error)")
      }
    }
    config.allowLoopback = allowLoopback
    config.do53Port = do53Port
    config.qnameMinimisation = !noQnameMinimisation
    config.useIPv4 = !noIPv4
    config.useIPv6 = !noIPv6
    config.cache.maxEntries = cacheSize
    config.encryption.enabled = !noEncryption
    config.encryption.port = encryptedPort
    config.encryption.timeout = probeTimeout
    config.encryption.damping = damping
    config.encryption.persistence = persistence
    config.encryption.maxConcurrentProbes = maxProbes
    config.encryption.maxSessions = maxSessions
    config.encryption.idleTimeout = sessionIdleTimeout
    config.encryption.extraCAFile = tlsCAFile
    var transports: [EncryptedTransport] = prefer == "dot" ? [.dot, .doq] : [.doq, .dot]
    if noDot { transports.removeAll { $0 == .dot } }
    if noDoq { transports.removeAll { $0 == .doq } }
    config.encryption.transports = transports
    if transports.isEmpty { config.encryption.enabled = false }
    return config
  }

  /// Builds the resolver with its transports and state file.
  func stack(group: any EventLoopGroup, logger: Logger) throws -> ResolverStack {
    let config = try configuration()
    do {
      return try ResolverStack(configuration: config, stateFile: stateFile, group: group, logger: logger)
    } catch {
      throw ValidationError("cannot set up TLS: \(error)")
    }
  }

  /// Sends log output to standard error at the chosen level.
  func bootstrapLogging() {
    let level = Logger.Level(rawValue: logLevel) ?? .warning
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
  }
}

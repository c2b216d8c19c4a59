import ArgumentParser
import Foundation
import Logging
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

  func validate() throws {
    guard (1...65535).contains(do53Port) else { throw ValidationError("--do53-port must be 1-65535, got \(do53Port)") }
    guard cacheSize > 0 else { throw ValidationError("--cache-size must be positive, got \(cacheSize)") }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
    if noIPv4 && noIPv6 { throw ValidationError("--no-ipv4 and --no-ipv6 together leave no address family") }
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
    return config
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

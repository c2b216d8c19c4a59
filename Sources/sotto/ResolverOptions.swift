import ArgumentParser
import Authority
import Foundation
import Logging
import NIOCore
import Resolver

/// Options shared by every command that runs a resolver. Every option is optional: one not given
/// leaves the config file's value (or the default from `Setting.all`) in force.
struct ResolverOptions: ParsableArguments {
  @Option(name: .long, help: "Read settings from this TOML file; flags given here win over it (see `sotto config`).")
  var config: String?

  @Option(name: .long, help: "Root hints file in named.root format (default: the built-in IANA root servers).")
  var rootHints: String?

  @Flag(
    name: .long, inversion: .prefixedNo,
    help: "Allow querying authoritative servers on loopback, unspecified and link-local addresses (labs).")
  var allowLoopback: Bool?

  @Option(name: .long, help: "Destination port for Do53 to every authoritative server (53).")
  var do53Port: Int?

  @Flag(name: .long, inversion: .prefixedNo, help: "QNAME minimisation (RFC 9156); --no-... sends full names.")
  var qnameMinimisation: Bool?

  @Option(name: .long, help: "QNAME minimisation mode: relaxed (retry with the full name) or strict.")
  var qnameMinimisationMode: String?

  @Option(name: .long, help: "Glue: strict (in-bailiwick only) or relaxed (also out-of-bailiwick).")
  var glue: String?

  @Flag(name: .customLong("ipv6"), inversion: .prefixedNo, help: "Use IPv6 towards authoritative servers.")
  var ipv6: Bool?

  @Flag(name: .customLong("ipv4"), inversion: .prefixedNo, help: "Use IPv4 towards authoritative servers.")
  var ipv4: Bool?

  @Option(name: .long, help: "Maximum number of cache entries (100000).")
  var cacheSize: Int?

  @Option(name: .long, help: "Lower bound for cached TTLs, seconds (0).")
  var minTTL: Int?

  @Option(name: .long, help: "Upper bound for cached TTLs, seconds (86400).")
  var maxTTL: Int?

  @Option(name: .long, help: "Upper bound for negative TTLs, seconds (3600).")
  var maxNegativeTTL: Int?

  @Option(name: .long, help: "Serve-stale: keep expired records this long, seconds, 0 off (86400).")
  var maxStale: Int?

  @Option(name: .long, help: "First retransmit timeout towards unknown servers, milliseconds (800).")
  var queryTimeout: Int?

  @Option(name: .long, help: "Passes over a zone's servers when they time out (2).")
  var queryRetries: Int?

  @Option(
    name: .long,
    help:
      "Do53 timeouts in a row that hold a server as unresponsive (later queries skip it but for probes); 0: never (3).")
  var unresponsiveAfter: Int?

  @Option(name: .long, help: "Overall seconds per client query before SERVFAIL (10).")
  var resolutionDeadline: Double?

  @Option(name: .long, help: "EDNS(0) UDP payload size advertised upstream, 512-4096 (1232).")
  var ednsBufferSize: Int?

  @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (warning).")
  var logLevel: String?

  @Option(name: .long, help: "Append log lines to this file instead of standard error; SIGHUP reopens it.")
  var logFile: String?

  @Flag(name: .long, inversion: .prefixedNo, help: "Opportunistic encryption (RFC 9539); --no-... is Do53 only.")
  var encryption: Bool?

  @Option(
    name: .long,
    help: "Keep the per-server encryption state in this JSON file (loaded at start, saved periodically and at exit).")
  var stateFile: String?

  @Option(name: .long, help: "Seconds between saves of the state file (60).")
  var stateSaveInterval: Double?

  @Option(name: .long, help: "Destination port for DoT and DoQ (853).")
  var encryptedPort: Int?

  @Option(name: .long, help: "RFC 9539 timeout: seconds an encrypted handshake may take (4).")
  var probeTimeout: Double?

  @Option(name: .long, help: "RFC 9539 damping: seconds a failed probe is remembered before probing again (86400).")
  var damping: Double?

  @Option(name: .long, help: "RFC 9539 persistence: seconds a working encrypted transport is remembered (259200).")
  var persistence: Double?

  @Option(name: .long, help: "Concurrent encrypted handshakes at most, all servers (10).")
  var maxProbes: Int?

  @Option(name: .long, help: "Open encrypted sessions at most; the least recently active is closed first (100).")
  var maxSessions: Int?

  @Option(name: .long, help: "Seconds an idle encrypted session stays open (30).")
  var sessionIdleTimeout: Double?

  @Option(
    name: .long,
    help: "DoT connections to one server at most; more than one only while its queries overlap (8).")
  var dotConnections: Int?

  @Option(
    name: .long, help: "Smallest round trip to a server, ms, at which it gets more than one DoT connection (1).")
  var dotConnectionsMinRtt: Double?

  @Option(name: .long, help: "Extra CA file used only to classify server certificates (never to reject them).")
  var tlsCAFile: String?

  @Option(name: .long, help: "Preferred encrypted transport when a server speaks both: doq or dot.")
  var prefer: String?

  @Flag(name: .customLong("dot"), inversion: .prefixedNo, help: "Probe and use DNS-over-TLS.")
  var dot: Bool?

  @Flag(name: .customLong("doq"), inversion: .prefixedNo, help: "Probe and use DNS-over-QUIC.")
  var doq: Bool?

  /// The settings given as flags (only those given).
  func commandLineSettings() -> Settings {
    var s = Settings()
    s[.rootHints] = rootHints.map(ConfigValue.string)
    s[.allowLoopback] = allowLoopback.map(ConfigValue.bool)
    s[.do53Port] = do53Port.map(ConfigValue.int)
    s[.qnameMinimisation] = qnameMinimisation.map(ConfigValue.bool)
    s[.qnameMinimisationMode] = qnameMinimisationMode.map(ConfigValue.string)
    s[.glue] = glue.map(ConfigValue.string)
    s[.ipv6] = ipv6.map(ConfigValue.bool)
    s[.ipv4] = ipv4.map(ConfigValue.bool)
    s[.cacheSize] = cacheSize.map(ConfigValue.int)
    s[.minTTL] = minTTL.map(ConfigValue.int)
    s[.maxTTL] = maxTTL.map(ConfigValue.int)
    s[.maxNegativeTTL] = maxNegativeTTL.map(ConfigValue.int)
    s[.maxStale] = maxStale.map(ConfigValue.int)
    s[.queryTimeout] = queryTimeout.map(ConfigValue.int)
    s[.queryRetries] = queryRetries.map(ConfigValue.int)
    s[.unresponsiveAfter] = unresponsiveAfter.map(ConfigValue.int)
    s[.resolutionDeadline] = resolutionDeadline.map(ConfigValue.number)
    s[.ednsBufferSize] = ednsBufferSize.map(ConfigValue.int)
    s[.logLevel] = logLevel.map(ConfigValue.string)
    s[.logFile] = logFile.map(ConfigValue.string)
    s[.encryption] = encryption.map(ConfigValue.bool)
    s[.stateFile] = stateFile.map(ConfigValue.string)
    s[.stateSaveInterval] = stateSaveInterval.map(ConfigValue.number)
    s[.encryptedPort] = encryptedPort.map(ConfigValue.int)
    s[.probeTimeout] = probeTimeout.map(ConfigValue.number)
    s[.damping] = damping.map(ConfigValue.number)
    s[.persistence] = persistence.map(ConfigValue.number)
    s[.maxProbes] = maxProbes.map(ConfigValue.int)
    s[.maxSessions] = maxSessions.map(ConfigValue.int)
    s[.sessionIdleTimeout] = sessionIdleTimeout.map(ConfigValue.number)
    s[.dotConnections] = dotConnections.map(ConfigValue.int)
    s[.dotConnectionsMinRTT] = dotConnectionsMinRtt.map(ConfigValue.number)
    s[.tlsCAFile] = tlsCAFile.map(ConfigValue.string)
    s[.prefer] = prefer.map(ConfigValue.string)
    s[.dot] = dot.map(ConfigValue.bool)
    s[.doq] = doq.map(ConfigValue.bool)
    return s
  }

  func validate() throws {
    for (key, value) in commandLineSettings().values {
      guard let setting = Setting.named(key) else { continue }
      if case .failure(let problem) = setting.check(value) {
        throw ValidationError("\(setting.flag.split(separator: " ")[0]): \(problem.message)")
      }
    }
  }

  /// Defaults, then the config file, then the flags; `listener` adds `--listen`/`--allow`/`--control`.
  func settings(listener: ListenerOptions? = nil) throws -> Settings {
    var file = Settings()
    if let config { file = try Self.readConfig(config) }
    var flags = commandLineSettings()
    if let listener { flags = flags.merging(listener.commandLineSettings()) }
    let merged = Settings.defaults.merging(file).merging(flags)
    if let problem = merged.combinationProblem() {
      throw ValidationError("key '\(problem.key)': \(problem.message)")
    }
    if let ca = merged.string(.tlsCAFile), !FileManager.default.isReadableFile(atPath: ca) {
      throw ValidationError("tls-ca-file \(ca) cannot be read")
    }
    return merged
  }

  /// Reads and checks a config file; errors name the file, line and key.
  static func readConfig(_ path: String) throws -> Settings {
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw ValidationError("cannot read config file \(path)")
    }
    let data = handle.readDataToEndOfFile()
    guard let text = String(data: data, encoding: .utf8) else {
      throw ValidationError("\(path): not UTF-8 text")
    }
    do {
      return try ConfigFile.parse(text, path: path)
    } catch {
      throw ValidationError(error.description)
    }
  }

  /// Builds the resolver configuration, reading the root hints file if one is given and probing
  /// whether the host has IPv4 and IPv6 routes at all.
  static func configuration(_ settings: Settings, logger: Logger) throws -> ResolverConfiguration {
    var config = ResolverConfiguration(settings: settings)
    // Background refreshes count against --max-resolutions (QueryProcessor): at most half of it,
    // so that clients keep the other half during an outage.
    config.maxBackgroundRefreshes = min(config.maxBackgroundRefreshes, max(1, settings.int(.maxResolutions) / 2))
    if let path = settings.string(.rootHints) {
      guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("cannot read root hints file \(path)")
      }
      do {
        config.rootHints = try RootHints(fileText: text)
      } catch {
        throw ValidationError("\(path): \(error)")
      }
    }
    if config.useIPv6 && !RouteProbe.hasIPv6Route() {
      config.ipv6Routable = false
      logger.notice("no IPv6 route: global IPv6 server addresses are skipped")
    }
    if config.useIPv4 && !RouteProbe.hasIPv4Route() {
      config.ipv4Routable = false
      logger.notice("no IPv4 route: global IPv4 server addresses are skipped")
    }
    return config
  }

  /// Builds the resolver with its transports and state file.
  static func stack(_ settings: Settings, group: any EventLoopGroup, logger: Logger) throws -> ResolverStack {
    let config = try configuration(settings, logger: logger)
    do {
      return try ResolverStack(
        configuration: config, stateFile: settings.string(.stateFile),
        saveInterval: settings.number(.stateSaveInterval), group: group, logger: logger)
    } catch {
      throw ValidationError("cannot set up TLS: \(error)")
    }
  }

  /// Sends log output to the log file (or `fallbackFile`) or else standard error; returns the
  /// file sink, which SIGHUP reopens.
  @discardableResult
  static func bootstrapLogging(_ settings: Settings, fallbackFile: String? = nil) throws -> FileLogHandler.Sink? {
    let level = settings.string(.logLevel).flatMap(Logger.Level.init(rawValue:)) ?? .warning
    if let path = settings.string(.logFile) ?? fallbackFile {
      return try FileLogHandler.bootstrap(path: path, level: level)
    }
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
    return nil
  }
}

/// Where `serve` and `top` answer clients.
struct ListenerOptions: ParsableArguments {
  @Option(name: .long, help: "Listen address ADDR:PORT or [ADDR]:PORT (repeatable; default 127.0.0.1:5300).")
  var listen: [String] = []

  @Option(
    name: .customLong("listen-tls"),
    help: "DNS-over-TLS listen address ADDR:PORT for clients, e.g. 0.0.0.0:853 (repeatable; default none).")
  var listenTLS: [String] = []

  @Option(
    name: .customLong("listen-quic"),
    help: "DNS-over-QUIC listen address ADDR:PORT for clients, UDP, e.g. 0.0.0.0:853 (repeatable; default none).")
  var listenQUIC: [String] = []

  @Option(
    name: .long,
    help: "PEM certificate (leaf, then chain) for --listen-tls and --listen-quic (default: self-signed at start).")
  var tlsCertificate: String?

  @Option(name: .long, help: "PEM private key of --tls-certificate.")
  var tlsKey: String?

  @Option(name: .long, help: "Allowed client network in CIDR form (repeatable; default loopback only).")
  var allow: [String] = []

  @Option(name: .long, help: "Control socket path (Unix domain, mode 0600) for `sotto ctl` and `sotto top --attach`.")
  var control: String?

  @Option(name: .long, help: "Client resolutions running at once; over the cap: SERVFAIL (1024).")
  var maxResolutions: Int?

  @Option(name: .long, help: "Open client TCP connections at most (256).")
  var maxTcpConnections: Int?

  @Option(name: .long, help: "TCP, DoT and DoQ connections one client may hold (64; loopback: no limit).")
  var maxConnectionsPerClient: Int?

  @Option(
    name: .customLong("client-ipv6-prefix"),
    help: "IPv6 prefix length one client is counted by; 128 counts each address (64).")
  var clientIPv6Prefix: Int?

  @Option(name: .long, help: "Seconds an idle client TCP connection stays open (10).")
  var tcpIdleTimeout: Double?

  @Option(name: .long, help: "Queries per client TCP connection before it is closed; 0: no limit (0).")
  var tcpQueriesPerConnection: Int?

  @Option(name: .long, help: "Queries per second from one client; excess dropped; 0: off (2000).")
  var clientRateLimit: Double?

  @Option(name: .long, help: "UDP responses kept to replay for repeated questions (0: off; default 10000).")
  var packetCacheSize: Int?

  @Option(
    name: .long, help: "NIO event-loop threads (0: one per core); resolutions run on one engine thread of their own.")
  var threads: Int?

  func validate() throws {
    for (key, value) in commandLineSettings().values {
      guard let setting = Setting.named(key), case .failure(let problem) = setting.check(value) else { continue }
      throw ValidationError("\(setting.flag.split(separator: " ")[0]): \(problem.message)")
    }
  }

  /// The listener settings given as flags.
  func commandLineSettings() -> Settings {
    var s = Settings()
    s[.packetCacheSize] = packetCacheSize.map(ConfigValue.int)
    s[.threads] = threads.map(ConfigValue.int)
    if !listen.isEmpty { s[.listen] = .strings(listen) }
    if !allow.isEmpty { s[.allow] = .strings(allow) }
    if !listenTLS.isEmpty { s[.listenTLS] = .strings(listenTLS) }
    if !listenQUIC.isEmpty { s[.listenQUIC] = .strings(listenQUIC) }
    s[.tlsCertificate] = tlsCertificate.map(ConfigValue.string)
    s[.tlsKey] = tlsKey.map(ConfigValue.string)
    s[.maxResolutions] = maxResolutions.map(ConfigValue.int)
    s[.maxTCPConnections] = maxTcpConnections.map(ConfigValue.int)
    s[.maxConnectionsPerClient] = maxConnectionsPerClient.map(ConfigValue.int)
    s[.clientIPv6Prefix] = clientIPv6Prefix.map(ConfigValue.int)
    s[.tcpIdleTimeout] = tcpIdleTimeout.map(ConfigValue.number)
    s[.tcpQueriesPerConnection] = tcpQueriesPerConnection.map(ConfigValue.int)
    s[.clientRateLimit] = clientRateLimit.map(ConfigValue.number)
    s[.control] = control.map(ConfigValue.string)
    return s
  }

  /// The listener configuration for the merged settings.
  static func configuration(_ settings: Settings) throws -> ListenerConfiguration {
    let addresses = try settings.strings(.listen).map { try Serve.parseListen($0) }
    guard !addresses.isEmpty else { throw ValidationError("server.listen: no listen address") }
    var config = ListenerConfiguration(addresses: addresses)
    config.allowed = try settings.strings(.allow).map { text in
      do { return try CIDR(text) } catch { throw ValidationError("allow \(text): \(error)") }
    }
    config.maxResolutions = settings.int(.maxResolutions)
    config.maxTCPConnections = settings.int(.maxTCPConnections)
    config.maxConnectionsPerClient = settings.int(.maxConnectionsPerClient)
    config.clientIPv6Prefix = settings.int(.clientIPv6Prefix)
    config.tcpIdleTimeout = .nanoseconds(Int64(settings.number(.tcpIdleTimeout) * 1e9))
    config.tcpQueriesPerConnection = settings.int(.tcpQueriesPerConnection)
    config.clientRateLimit = settings.number(.clientRateLimit)
    config.answerDeadline = settings.number(.resolutionDeadline) + 1
    config.tlsAddresses = try settings.strings(.listenTLS).map {
      try Serve.parseListen($0, flag: "--listen-tls", defaultPort: 853)
    }
    config.quicAddresses = try settings.strings(.listenQUIC).map {
      try Serve.parseListen($0, flag: "--listen-quic", defaultPort: 853)
    }
    let encrypted = config.tlsAddresses + config.quicAddresses
    if !encrypted.isEmpty {
      config.tls = try tlsIdentity(settings, for: encrypted)
    }
    return config
  }

  /// The DoT and DoQ listeners' certificate: the operator's files, or else a self-signed one made now
  /// (opportunistic clients, RFC 7858 §4.1, accept it; clients can pin its SPKI).
  static func tlsIdentity(_ settings: Settings, for addresses: [SocketAddress]) throws -> TLSServerContext {
    if let certificate = settings.string(.tlsCertificate), let key = settings.string(.tlsKey) {
      do {
        return try TLSServerContext(certificateFile: certificate, keyFile: key)
      } catch {
        throw ValidationError("tls-certificate: \(error)")
      }
    }
    do {
      let identity = try CertificateFactory(name: "Sotto resolver (self-signed at start)")
        .issue(name: "sotto.invalid", ip: addresses.first?.ipAddress ?? "127.0.0.1")
      return try TLSServerContext(certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM)
    } catch {
      throw ValidationError("cannot make a certificate for --listen-tls/--listen-quic: \(error)")
    }
  }

  /// Entries of the listener's packet cache (0: none).
  static func packetCacheEntries(_ settings: Settings) -> Int { settings.int(.packetCacheSize) }
}

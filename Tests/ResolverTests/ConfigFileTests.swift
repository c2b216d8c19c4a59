import Testing

@testable import Resolver

@Suite struct ConfigFileTests {
  /// A non-default value for every setting.
  static let everyKey = """
    [resolver]
    root-hints = "/etc/sotto/root.hints"
    allow-loopback = true
    do53-port = 5353
    ipv4 = true
    ipv6 = false
    qname-minimisation = false
    qname-minimisation-mode = "strict"
    glue = "relaxed"
    cache-size = 5000
    min-ttl = 30
    max-ttl = 3600
    max-negative-ttl = 600
    max-stale = 3600
    query-timeout = 400
    query-retries = 3
    unresponsive-after = 5
    resolution-deadline = 2.5
    edns-buffer-size = 1400

    [encryption]
    enabled = false
    dot = false
    doq = true
    prefer = "dot"
    port = 8853
    persistence = 1000
    damping = 60.5
    probe-timeout = 2
    max-probes = 3
    max-sessions = 7
    session-idle-timeout = 12.5
    dot-connections = 2
    dot-connections-min-rtt = 0.5
    tls-ca-file = "/etc/ssl/ca \\"quoted\\".pem"

    [server]
    listen = ["127.0.0.1:53", "[::1]:53"]
    listen-tls = ["0.0.0.0:853"]
    listen-quic = ["0.0.0.0:853"]
    tls-certificate = "/etc/sotto/cert.pem"
    tls-key = "/etc/sotto/key.pem"
    allow = ["10.0.0.0/8"]
    max-resolutions = 64
    max-tcp-connections = 16
    max-connections-per-client = 4
    client-ipv6-prefix = 56
    tcp-idle-timeout = 2.5
    tcp-queries-per-connection = 500
    client-rate-limit = 50
    control = "/run/sotto/control.sock"
    packet-cache-size = 500
    threads = 3

    [log]
    level = "debug"
    file = "/var/log/sotto/sotto.log"

    [state]
    file = "/var/lib/sotto/state.json"
    save-interval = 15
    """

  func parse(_ text: String) throws(ConfigError) -> Settings { try ConfigFile.parse(text, path: "test.toml") }

  func error(_ text: String) -> ConfigError? {
    do {
      _ = try parse(text)
      return nil
    } catch {
      return error
    }
  }

  @Test func everyKeyIsCoveredAndRoundTrips() throws {
    let settings = try parse(Self.everyKey)
    #expect(Set(settings.values.keys) == Set(Setting.all.map(\.key)))
    // ipv4 and doq keep their defaults: with ipv6 and dot off they are all that is left.
    for setting in Setting.all where setting != .ipv4 && setting != .doq {
      #expect(settings[setting] != setting.defaultValue, "\(setting.key)")
    }
    let printed = settings.tomlText()
    #expect(try parse(printed) == settings)
    #expect(try parse(printed).tomlText() == printed)
  }

  @Test func defaultsFileIsCompleteAndParsesToTheDefaults() throws {
    let text = Settings.defaultsFileText()
    for setting in Setting.all { #expect(text.contains("\(setting.name) = "), "\(setting.key)") }
    let parsed = try parse(text)
    #expect(Settings.defaults.merging(parsed) == Settings.defaults)
    #expect(try parse(Settings.defaults.tomlText()) == Settings.defaults)
  }

  @Test func mappedToTheResolverConfiguration() throws {
    let config = ResolverConfiguration(settings: Settings.defaults.merging(try parse(Self.everyKey)))
    #expect(config.do53Port == 5353 && config.allowLoopback && !config.useIPv6 && !config.qnameMinimisation)
    #expect(config.qnameMinimisationStrict && config.relaxedGlue)
    #expect(config.cache.maxEntries == 5000 && config.cache.minTTL == 30 && config.cache.maxTTL == 3600)
    #expect(config.cache.maxNegativeTTL == 600 && config.queryTimeoutMs == 400 && config.queryRetries == 3)
    #expect(config.unresponsiveAfter == 5)
    #expect(config.cache.maxStale == 3600)
    #expect(config.limits.deadline == 2.5 && config.ednsBufferSize == 1400)
    #expect(!config.encryption.enabled && config.encryption.port == 8853 && config.encryption.timeout == 2)
    #expect(config.encryption.transports == [.doq] && config.encryption.maxSessions == 7)
    #expect(config.encryption.dotConnections == 2 && config.encryption.dotConnectionsMinRTTMs == 0.5)
  }

  @Test func defaultsMatchTheCoreDefaults() {
    let mapped = ResolverConfiguration(settings: .defaults)
    let core = ResolverConfiguration()
    #expect(mapped.cache.maxEntries == core.cache.maxEntries && mapped.cache.maxTTL == core.cache.maxTTL)
    #expect(mapped.limits.deadline == core.limits.deadline && (10...30).contains(mapped.limits.deadline))
    #expect(mapped.ednsBufferSize == core.ednsBufferSize && mapped.queryTimeoutMs == core.queryTimeoutMs)
    #expect(mapped.encryption.persistence == core.encryption.persistence)
    #expect(mapped.encryption.transports == core.encryption.transports)
    #expect(mapped.encryption.dotConnections == core.encryption.dotConnections)
    #expect(mapped.encryption.dotConnectionsMinRTTMs == core.encryption.dotConnectionsMinRTTMs)
  }

  @Test func commandLineWinsOverTheFile() throws {
    let file = try parse("[resolver]\ncache-size = 10\nqname-minimisation = false\n")
    var flags = Settings()
    flags[.qnameMinimisation] = .bool(true)
    let merged = Settings.defaults.merging(file).merging(flags)
    #expect(merged[.cacheSize] == .int(10))
    #expect(merged[.qnameMinimisation] == .bool(true))
    #expect(merged[.ednsBufferSize] == .int(1232))
  }

  @Test func outOfRangeNamesLineAndKey() {
    let e = error("# top\n\n[resolver]\ndo53-port = 53\ncache-size = -3\n")
    #expect(
      e
        == ConfigError(
          file: "test.toml", line: 5, key: "resolver.cache-size", message: "must be a positive integer, got -3"))
    #expect(e?.description == "test.toml:5: key 'resolver.cache-size': must be a positive integer, got -3")
    #expect(error("[resolver]\nedns-buffer-size = 9000\n")?.line == 2)
    #expect(error("[resolver]\nresolution-deadline = 0\n")?.key == "resolver.resolution-deadline")
    #expect(error("[encryption]\nprefer = \"doh\"\n")?.message == "must be one of doq, dot, got doh")
  }

  @Test func unknownKeyAndTableNamed() {
    let e = error("[resolver]\ncache-size = 3\n\n[log]\nlevel = \"info\"\nlevl = \"info\"\n")
    #expect(e?.line == 6 && e?.key == "log.levl")
    let t = error("[resolver]\ncache-size = 3\n[resolvr]\ncache-size = 3\n")
    #expect(t?.line == 3 && t?.message.contains("unknown table [resolvr]") == true)
    let top = error("verbose = true\n")
    #expect(top?.line == 1 && top?.message.contains("unknown key 'verbose'") == true)
  }

  @Test func wrongTypeNamed() {
    let e = error("[resolver]\n\nipv6 = \"no\"\n")
    #expect(e?.line == 3 && e?.key == "resolver.ipv6" && e?.message == "must be true or false, got string \"no\"")
    #expect(error("[resolver]\ncache-size = 1.5\n")?.key == "resolver.cache-size")
    #expect(error("[server]\nlisten = \"127.0.0.1:53\"\n")?.key == "server.listen")
    #expect(error("[server]\nlisten = [1, 2]\n")?.line == 2)
    #expect(error("resolver = 3\n")?.line == 1)
  }

  @Test func dottedKeysFindTheirLine() {
    let e = error("resolver.cache-size = 3\nresolver.glue = \"loose\"\n")
    #expect(e?.line == 2 && e?.key == "resolver.glue")
  }

  @Test func syntaxErrorNamesTheLine() {
    let e = error("[resolver]\ncache-size = 3\nglue = = \"strict\"\n")
    #expect(e?.line == 3 && e?.key == nil && e?.message.hasPrefix("TOML syntax error") == true)
  }

  @Test func combinationsRefused() {
    #expect(error("[resolver]\nipv4 = false\nipv6 = false\n")?.key == "resolver.ipv6")
    #expect(error("[resolver]\nmin-ttl = 600\nmax-ttl = 60\n")?.line == 2)
    // The DoT listener's certificate and key go together.
    #expect(error("[server]\ntls-key = \"/k.pem\"\n")?.key == "server.tls-key")
    #expect(error("[server]\ntls-certificate = \"/c.pem\"\n")?.key == "server.tls-certificate")
  }

  @Test func relaxedGlueAcceptsOutOfBailiwickAddresses() throws {
    var m = Message()
    m.header.id = 1
    let child = try DNSName("example.test.")
    let ns = try DNSName("ns.other.example.")
    m.questions = [Question(name: try DNSName("www.example.test."), type: .a)]
    m.authority = [ResourceRecord(name: child, type: .ns, ttl: 60, rdata: .ns(ns))]
    m.additional = [ResourceRecord(name: ns, type: .a, ttl: 60, rdata: .a(IPv4Address("192.0.2.1")!))]
    let zone = try DNSName("test.")
    let qname = try DNSName("www.example.test.")
    guard case .referral(_, _, _, let strict) = ReplyClassifier.classify(m, zone: zone, qname: qname, qtype: .a),
      case .referral(_, _, _, let relaxed) = ReplyClassifier.classify(
        m, zone: zone, qname: qname, qtype: .a, relaxedGlue: true)
    else {
      Issue.record("not a referral")
      return
    }
    #expect(strict.isEmpty)
    #expect(relaxed.count == 1)
  }
}

/// Every operator setting with its default: the one table the command line, the config file,
/// `sotto config defaults` and the README's settings table are made from.
extension Setting {
  // [resolver]
  public static let rootHints = Setting(
    "resolver.root-hints", flag: "--root-hints FILE", .path, default: nil, unset: "built-in IANA roots",
    "root hints in named.root format")
  public static let allowLoopback = Setting(
    "resolver.allow-loopback", flag: "--allow-loopback", .bool, default: .bool(false),
    "query authoritative servers on loopback, unspecified and link-local addresses (labs)")
  public static let do53Port = Setting(
    "resolver.do53-port", flag: "--do53-port N", .integer(1...65535), default: .int(53),
    "destination port for Do53 to every authoritative server")
  public static let ipv4 = Setting(
    "resolver.ipv4", flag: "--no-ipv4", .bool, default: .bool(true),
    "use IPv4 towards authoritative servers (skipped anyway when the host has no IPv4 route)")
  public static let ipv6 = Setting(
    "resolver.ipv6", flag: "--no-ipv6", .bool, default: .bool(true),
    "use IPv6 towards authoritative servers (skipped anyway when the host has no IPv6 route)")
  public static let qnameMinimisation = Setting(
    "resolver.qname-minimisation", flag: "--no-qname-minimisation", .bool, default: .bool(true),
    "QNAME minimisation (RFC 9156): send each server only the labels it needs")
  public static let qnameMinimisationMode = Setting(
    "resolver.qname-minimisation-mode", flag: "--qname-minimisation-mode M", .choice(["relaxed", "strict"]),
    default: .string("relaxed"),
    "relaxed: retry with the full name when every server fails a minimised query or one answers it NXDOMAIN"
      + " (an empty non-terminal some servers deny); strict: no retry, NXDOMAIN cuts the subtree")
  public static let glue = Setting(
    "resolver.glue", flag: "--glue M", .choice(["strict", "relaxed"]), default: .string("strict"),
    "strict: only in-bailiwick glue; relaxed: also out-of-bailiwick glue for the referral's NS names")
  public static let cacheSize = Setting(
    "resolver.cache-size", flag: "--cache-size N", .integer(1...Int.max), default: .int(100_000),
    "cache entries (RRsets and negative answers), least recently used evicted")
  public static let minTTL = Setting(
    "resolver.min-ttl", flag: "--min-ttl S", .integer(0...86_400), default: .int(0),
    "lower bound for cached TTLs, seconds (0 keeps TTLs as received)")
  public static let maxTTL = Setting(
    "resolver.max-ttl", flag: "--max-ttl S", .integer(1...2_147_483_647), default: .int(86_400),
    "upper bound for cached TTLs, seconds")
  public static let maxNegativeTTL = Setting(
    "resolver.max-negative-ttl", flag: "--max-negative-ttl S", .integer(0...2_147_483_647), default: .int(3_600),
    "upper bound for cached NXDOMAIN/NODATA TTLs, seconds")
  public static let maxStale = Setting(
    "resolver.max-stale", flag: "--max-stale S", .integer(0...259_200), default: .int(86_400),
    "serve-stale (RFC 8767): how long expired records are kept to answer with if their servers fail; 0: off")
  public static let queryTimeout = Setting(
    "resolver.query-timeout", flag: "--query-timeout MS", .integer(50...10_000), default: .int(800),
    "first retransmit timeout towards a server never heard from, milliseconds (known servers: 2 x srtt)")
  public static let queryRetries = Setting(
    "resolver.query-retries", flag: "--query-retries N", .integer(1...10), default: .int(2),
    "passes over a zone's servers when they time out")
  public static let unresponsiveAfter = Setting(
    "resolver.unresponsive-after", flag: "--unresponsive-after N", .integer(0...100), default: .int(3),
    "Do53 timeouts in a row of one kind of query (A, AAAA, HTTPS/SVCB, other; over 2 s, no reply between) that hold a server as "
      + "unresponsive to that kind: later queries skip it but for probes at doubling gaps (1-30 s); 0: never")
  public static let resolutionDeadline = Setting(
    "resolver.resolution-deadline", flag: "--resolution-deadline S", .number(above: 0, min: 0, max: 60),
    default: .number(10),
    "overall time for one client query, seconds; the client gets SERVFAIL after it (R-43: 10-30 s)")
  public static let ednsBufferSize = Setting(
    "resolver.edns-buffer-size", flag: "--edns-buffer-size N", .integer(512...4096), default: .int(1232),
    "EDNS(0) UDP payload size advertised to authoritative servers")

  // [encryption]
  public static let encryption = Setting(
    "encryption.enabled", flag: "--no-encryption", .bool, default: .bool(true),
    "opportunistic encryption (RFC 9539); off: Do53 only, no probes")
  public static let dot = Setting(
    "encryption.dot", flag: "--no-dot", .bool, default: .bool(true), "probe and use DNS-over-TLS")
  public static let doq = Setting(
    "encryption.doq", flag: "--no-doq", .bool, default: .bool(true), "probe and use DNS-over-QUIC")
  public static let prefer = Setting(
    "encryption.prefer", flag: "--prefer T", .choice(["doq", "dot"]), default: .string("doq"),
    "preferred encrypted transport when a server speaks both")
  public static let encryptedPort = Setting(
    "encryption.port", flag: "--encrypted-port N", .integer(1...65535), default: .int(853),
    "destination port for DoT and DoQ (labs)")
  public static let persistence = Setting(
    "encryption.persistence", flag: "--persistence S", .number(above: nil, min: 0, max: .infinity),
    default: .number(259_200), "how long a working encrypted transport is remembered after its last response (3 days)")
  public static let damping = Setting(
    "encryption.damping", flag: "--damping S", .number(above: nil, min: 0, max: .infinity), default: .number(86_400),
    "how long a failed probe or session is remembered before probing again (1 day)")
  public static let probeTimeout = Setting(
    "encryption.probe-timeout", flag: "--probe-timeout S", .number(above: 0, min: 0, max: 60), default: .number(4),
    "how long an encrypted handshake may take, seconds")
  public static let maxProbes = Setting(
    "encryption.max-probes", flag: "--max-probes N", .integer(1...Int.max), default: .int(10),
    "handshakes in progress at once, all servers")
  public static let maxSessions = Setting(
    "encryption.max-sessions", flag: "--max-sessions N", .integer(1...Int.max), default: .int(100),
    "open encrypted sessions; the least recently active is closed first")
  public static let sessionIdleTimeout = Setting(
    "encryption.session-idle-timeout", flag: "--session-idle-timeout S", .number(above: 0, min: 0, max: .infinity),
    default: .number(30), "an idle encrypted session is closed after this many seconds")
  public static let dotConnections = Setting(
    "encryption.dot-connections", flag: "--dot-connections N", .integer(1...16), default: .int(8),
    "DoT connections to one server at most; more than one only while its queries overlap")
  public static let dotConnectionsMinRTT = Setting(
    "encryption.dot-connections-min-rtt", flag: "--dot-connections-min-rtt MS",
    .number(above: nil, min: 0, max: 10_000),
    default: .number(1), "smallest round trip to a server, ms, at which it gets more than one DoT connection")
  public static let tlsCAFile = Setting(
    "encryption.tls-ca-file", flag: "--tls-ca-file FILE", .path, default: nil, unset: "system store",
    "extra CA file used only to classify server certificates (never to reject them)")

  // [server]
  public static let listen = Setting(
    "server.listen", flag: "--listen ADDR:PORT", .list, default: .strings(["127.0.0.1:5300"]),
    "addresses to answer clients on, UDP and TCP (serve, top); `[::1]:5300` for IPv6")
  public static let listenTLS = Setting(
    "server.listen-tls", flag: "--listen-tls ADDR:PORT", .list, default: nil, unset: "none",
    "addresses to answer clients on over DNS-over-TLS (RFC 7858), e.g. `0.0.0.0:853` (serve, top)")
  public static let listenQUIC = Setting(
    "server.listen-quic", flag: "--listen-quic ADDR:PORT", .list, default: nil, unset: "none",
    "addresses to answer clients on over DNS-over-QUIC (RFC 9250, UDP), e.g. `0.0.0.0:853` (serve, top)")
  public static let tlsCertificate = Setting(
    "server.tls-certificate", flag: "--tls-certificate FILE", .path, default: nil,
    unset: "self-signed, made at start",
    "PEM certificate (leaf first, then its chain) for --listen-tls and --listen-quic; needs tls-key; SIGHUP reads both again (serve, top)"
  )
  public static let tlsKey = Setting(
    "server.tls-key", flag: "--tls-key FILE", .path, default: nil, unset: "made at start",
    "PEM private key of tls-certificate (serve, top)")
  public static let allow = Setting(
    "server.allow", flag: "--allow CIDR", .list, default: .strings(["127.0.0.0/8", "::1/128"]),
    "client networks that get answers; others get REFUSED (serve, top)")
  public static let maxResolutions = Setting(
    "server.max-resolutions", flag: "--max-resolutions N", .integer(1...Int.max), default: .int(1024),
    "resolutions running at once, serve-stale refreshes included; a query over the cap gets SERVFAIL at once (serve, top)"
  )
  public static let maxTCPConnections = Setting(
    "server.max-tcp-connections", flag: "--max-tcp-connections N", .integer(1...Int.max), default: .int(256),
    "open client TCP and DoT connections (and DoQ connections on each DoQ address); further ones are turned away (serve, top)"
  )
  public static let maxConnectionsPerClient = Setting(
    "server.max-connections-per-client", flag: "--max-connections-per-client N", .integer(0...Int.max),
    default: .int(64),
    "TCP, DoT and DoQ connections one client (an IPv4 address, an IPv6 prefix) may hold open at once; loopback clients are not limited (0: no limit) (serve, top)"
  )
  public static let clientIPv6Prefix = Setting(
    "server.client-ipv6-prefix", flag: "--client-ipv6-prefix N", .integer(8...128), default: .int(64),
    "the IPv6 prefix length one client is counted by for the per-client rate limit and connection cap: a host may use any address of its /64 (128: each address) (serve, top)"
  )
  public static let tcpIdleTimeout = Setting(
    "server.tcp-idle-timeout", flag: "--tcp-idle-timeout S", .number(above: 0, min: 0, max: 3600),
    default: .number(10), "seconds a client TCP, DoT or DoQ connection may stay idle before it is closed (serve, top)")
  public static let tcpQueriesPerConnection = Setting(
    "server.tcp-queries-per-connection", flag: "--tcp-queries-per-connection N", .integer(0...Int.max),
    default: .int(0),
    "queries one client TCP, DoT or DoQ connection may send before it is closed; 0: no limit (serve, top)")
  public static let clientRateLimit = Setting(
    "server.client-rate-limit", flag: "--client-rate-limit N", .number(above: nil, min: 0, max: .infinity),
    default: .number(2000),
    "queries per second from one client (an IPv4 address, an IPv6 prefix; bursts of as many); excess is dropped; 0: off (serve, top)"
  )
  public static let control = Setting(
    "server.control", flag: "--control PATH", .path, default: nil,
    "control socket (mode 0600) for `sotto ctl` and `sotto top --attach` (serve, top)")
  public static let packetCacheSize = Setting(
    "server.packet-cache-size", flag: "--packet-cache-size N", .integer(0...Int.max), default: .int(10_000),
    "responses kept ready to replay for repeated questions over UDP, TCP and DoT, answered without resolving (0: off; serve, top)"
  )
  public static let threads = Setting(
    "server.threads", flag: "--threads N", .integer(0...1024), default: .int(0),
    "NIO event-loop threads (0: one per core) for TCP clients, upstream Do53 over TCP and the control socket; resolutions, UDP (with the packet cache), DoT and DoQ run on one engine thread (serve)"
  )

  // [log]
  public static let logLevel = Setting(
    "log.level", flag: "--log-level L", .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
    default: .string("warning"), "least severe log messages written")
  public static let logFile = Setting(
    "log.file", flag: "--log-file PATH", .path, default: nil, unset: "standard error",
    "append log lines to this file; SIGHUP reopens it (top with the dashboard: sotto-top.log in the temporary directory)"
  )

  // [state]
  public static let stateFile = Setting(
    "state.file", flag: "--state-file PATH", .path, default: nil,
    "keep the per-server encryption state in this JSON file across runs")
  public static let stateSaveInterval = Setting(
    "state.save-interval", flag: "--state-save-interval S", .number(above: 0, min: 0, max: .infinity),
    default: .number(60), "seconds between saves of the state file (it is also saved at exit)")

  /// Every setting, in file and table order.
  public static let all: [Setting] = [
    rootHints, allowLoopback, do53Port, ipv4, ipv6, qnameMinimisation, qnameMinimisationMode, glue, cacheSize,
    minTTL, maxTTL, maxNegativeTTL, maxStale, queryTimeout, queryRetries, unresponsiveAfter, resolutionDeadline,
    ednsBufferSize,
    encryption, dot, doq, prefer, encryptedPort, persistence, damping, probeTimeout, maxProbes, maxSessions,
    sessionIdleTimeout, dotConnections, dotConnectionsMinRTT, tlsCAFile,
    listen, listenTLS, listenQUIC, tlsCertificate, tlsKey, allow, maxResolutions, maxTCPConnections,
    maxConnectionsPerClient, clientIPv6Prefix, tcpIdleTimeout,
    tcpQueriesPerConnection, clientRateLimit,
    control, packetCacheSize, threads,
    logLevel, logFile,
    stateFile, stateSaveInterval,
  ]

  /// The tables of the config file, in order.
  public static let sections = ["resolver", "encryption", "server", "log", "state"]

  /// The setting with this key.
  public static func named(_ key: String) -> Setting? { all.first { $0.key == key } }
}

extension Settings {
  /// Every setting at its default.
  public static var defaults: Settings {
    var s = Settings()
    for setting in Setting.all { s[setting] = setting.defaultValue }
    return s
  }
}

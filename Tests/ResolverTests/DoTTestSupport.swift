import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

/// A real NSD serving `dot.test.` over DoT on 127.53.200.1 with a fresh self-signed certificate
/// (CN=ns1.dot.test), started for one test and stopped by `stop()`. Loopback only. Its port is a free
/// one drawn at start, so two `swift test` runs at once (or a lab on port 853) do not collide.
final class NSDDoTServer {
  static let address = "127.53.200.1"
  static let zone = "dot.test."
  let directory: URL
  /// NSD's first process; also the ID of its own process group (main, xfrd and server processes).
  let pid: pid_t
  let endpoint: ServerEndpoint
  private var stopped = false

  /// Starts NSD, or returns nil (test skipped) when `nsd`/`openssl` are missing; with CI=true that is a failure.
  static func start() async throws -> NSDDoTServer? {
    guard let nsd = executable("nsd"), let openssl = executable("openssl") else {
      let message = "nsd and openssl are needed for the DoT tests (apt-get install nsd openssl)"
      if ProcessInfo.processInfo.environment["CI"] == "true" {
        Issue.record(Comment(rawValue: message))
      } else {
        print("skipped: \(message)")
      }
      return nil
    }
    return try await retryingOnAnotherPort(address) { port in try await start(nsd: nsd, openssl: openssl, port: port) }
  }

  private static func start(nsd: String, openssl: String, port: Int) async throws -> NSDDoTServer {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-dot-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try await run(
      openssl,
      [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ns1.dot.test",
        "-keyout", dir.appendingPathComponent("key.pem").path, "-out", dir.appendingPathComponent("cert.pem").path,
      ])
    try zoneText.write(to: dir.appendingPathComponent("dot.test.zone"), atomically: true, encoding: .utf8)
    try config(dir: dir.path, port: port).write(
      to: dir.appendingPathComponent("nsd.conf"), atomically: true, encoding: .utf8)
    let pid = try spawn(nsd, ["-c", dir.appendingPathComponent("nsd.conf").path, "-d"])
    guard let endpoint = ServerEndpoint(ip: address, port: port) else { throw DoTTestError.setup("endpoint") }
    let server = NSDDoTServer(directory: dir, pid: pid, endpoint: endpoint)
    do {
      try await server.waitUntilServing()
    } catch {
      if let log = try? String(contentsOf: dir.appendingPathComponent("nsd.log"), encoding: .utf8) {
        print("nsd log:\n\(log)")
      }
      server.stop()
      throw error
    }
    return server
  }

  private init(directory: URL, pid: pid_t, endpoint: ServerEndpoint) {
    self.directory = directory
    self.pid = pid
    self.endpoint = endpoint
  }

  /// Stops NSD (its whole process group: main, xfrd, server) and removes its directory.
  func stop() {
    guard !stopped else { return }
    stopped = true
    kill(-pid, SIGTERM)
    let deadline = Date().addingTimeInterval(3)
    var status: Int32 = 0
    while waitpid(pid, &status, WNOHANG) == 0 && Date() < deadline { usleep(20_000) }
    kill(-pid, SIGKILL)  // whatever is left of the group
    _ = waitpid(pid, &status, WNOHANG)
    try? FileManager.default.removeItem(at: directory)
  }

  /// True while NSD's first process has not exited.
  private var isRunning: Bool {
    var status: Int32 = 0
    return waitpid(pid, &status, WNOHANG) == 0
  }

  /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34), which Swift's Glibc module does
  /// not export.
  private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
    unsafeBitCast($0, to: AddCloseFrom.self)
  }
  private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

  /// posix_spawn in a new process group with no blocked signals: a Foundation `Process` child inherits
  /// the test thread's blocked signal mask, and an NSD started that way ignores SIGTERM. The child
  /// keeps no descriptor past stdio: NIO opens its sockets without close-on-exec, and an NSD that
  /// held a copy of another test's socket kept that connection open after the test closed it (its
  /// peer never saw the end).
  static func spawn(_ path: String, _ arguments: [String]) throws -> pid_t {
    guard let addCloseFrom = addCloseFrom else {
      throw DoTTestError.setup("no posix_spawn_file_actions_addclosefrom_np")
    }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    // SIGPIPE stays ignored as in the test process: s_server would die writing tickets to a closed socket.
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    guard addCloseFrom(&actions, 3) == 0 else { throw DoTTestError.setup("posix_spawn_file_actions_addclosefrom_np") }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
    guard rc == 0 else { throw DoTTestError.setup("posix_spawn \(path) failed: \(rc)") }
    return pid
  }

  /// Client TCP connections to this server in ESTABLISHED state right now (/proc/net/tcp: every
  /// socket in the network namespace, so this process's DoT connections to NSD).
  func establishedConnections() -> Int {
    // Read to the end by hand: procfs reports a size of 0, and a table longer than a page (the
    // TIME_WAIT sockets of a whole test run) came back cut short, without these lines.
    let fd = open("/proc/net/tcp", O_RDONLY)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
      let n = read(fd, &chunk, chunk.count)
      if n <= 0 { break }
      bytes += chunk[0..<n]
    }
    let table = String(decoding: bytes, as: UTF8.self)
    // 127.53.200.1 as the kernel prints it: the address's four octets reversed, then the port.
    let remote = "01C8357F:" + String(format: "%04X", endpoint.port)
    return table.split(separator: "\n").dropFirst().count { line in
      let fields = line.split(separator: " ")
      return fields.count > 3 && fields[2] == remote && fields[3] == "01"
    }
  }

  private func waitUntilServing() async throws {
    let context = try DoTClientContext()
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline {
      guard isRunning else { throw DoTTestError.setup("nsd exited; see \(directory.path)") }
      if let (connection, _) = try? await DoTConnection.connect(
        to: endpoint, expectedName: nil, context: context,
        resumption: nil, connectTimeout: .milliseconds(500), handshakeTimeout: .seconds(1), idleTimeout: .seconds(1),
        onTicket: { _ in }, onClose: { _ in })
      {
        connection.close()
        return
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    throw DoTTestError.setup("nsd did not start serving DoT in time")
  }

  private static let zoneText = """
    $TTL 300
    @ IN SOA ns1.dot.test. hostmaster.dot.test. 1 3600 600 86400 300
    @ IN NS ns1.dot.test.
    ns1 IN A 127.53.200.1
    www IN A 192.0.2.1
    mail IN A 192.0.2.25
    www IN AAAA 2001:db8::1

    """

  private static func config(dir: String, port: Int) -> String {
    """
    server:
        ip-address: \(address)@\(port)
        tls-port: \(port)
        tls-service-key: "\(dir)/key.pem"
        tls-service-pem: "\(dir)/cert.pem"
        do-ip4: yes
        do-ip6: no
        username: ""
        chroot: ""
        server-count: 1
        reuseport: no
        database: ""
        zonelistfile: "\(dir)/zone.list"
        xfrdfile: "\(dir)/xfrd.state"
        xfrdir: "\(dir)"
        pidfile: "\(dir)/nsd.pid"
        logfile: "\(dir)/nsd.log"
        zonesdir: "\(dir)"
        verbosity: 1
    remote-control:
        control-enable: no
    zone:
        name: "\(zone)"
        zonefile: "\(dir)/dot.test.zone"

    """
  }

  static func executable(_ name: String) -> String? {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
      let path = "\(dir)/\(name)"
      if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
  }

  /// Runs `tool` to its end on a thread of its own (`onOwnThread`); throws unless it exits 0.
  static func run(_ tool: String, _ arguments: [String]) async throws {
    try await onOwnThread { try runBlocking(tool, arguments) }
  }

  private static func runBlocking(_ tool: String, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw DoTTestError.setup("\(tool) failed") }
  }
}

enum DoTTestError: Error {
  case setup(String)
}

/// A port on loopback `address` that TCP and UDP can both bind right now, for a test server
/// started next. Drawn from 20000-32767, below Linux's default ephemeral range (32768-60999): a
/// port from bind(0) was often taken again by another process's outgoing socket before NSD bound
/// it. It is free only until someone else takes it: start servers through `retryingOnAnotherPort`.
func freeTestPort(on address: String) async throws -> Int {
  let group = MultiThreadedEventLoopGroup.singleton
  for _ in 0..<50 {
    let port = Int.random(in: 20000...32767)
    guard let tcp = try? await ServerBootstrap(group: group).bind(host: address, port: port).get() else { continue }
    let udp = try? await DatagramBootstrap(group: group)
      .bindClosingOnFailure(to: try SocketAddress(ipAddress: address, port: port))
    try? await udp?.close()
    try? await tcp.close()
    if udp != nil { return port }
  }
  throw DoTTestError.setup("no port on \(address) is free for both TCP and UDP")
}

/// Runs `start` with a free port on `address`; a setup failure (such as the port taken in between)
/// is retried on another port, up to three attempts. The last failure names the earlier ones.
func retryingOnAnotherPort<Server>(_ address: String, _ start: (Int) async throws -> Server) async throws -> Server {
  var failures: [String] = []
  while true {
    do {
      return try await start(try await freeTestPort(on: address))
    } catch DoTTestError.setup(let why) {
      failures.append(why)
      guard failures.count < 3 else {
        throw DoTTestError.setup("3 attempts on \(address): \(failures.joined(separator: "; "))")
      }
      print("test server on \(address) did not start (\(why)); trying another port")
    }
  }
}

/// Collects values handed to the DoT callbacks (tickets, close reasons) from any thread.
final class DoTRecorder<Value: Sendable>: Sendable {
  private let values = Mutex<[Value]>([])
  func append(_ value: Value) { values.withLock { $0.append(value) } }
  var all: [Value] { values.withLock { $0 } }

  /// Waits up to `seconds` for at least one value.
  func waitForFirst(seconds: Double = 3) async -> Value? {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if let first = all.first { return first }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return all.first
  }
}

/// A TCP listener on `host` (loopback) that accepts connections and never sends a byte. It notes
/// when each connection was closed by the client, on its event loop: a test can time a client's
/// timeout by that, whatever delays the test task's own resumption.
final class SilentTCPListener {
  let channel: any Channel
  private let closes = DoTRecorder<ContinuousClock.Instant>()
  init(host: String = "127.0.0.1") async throws {
    let closes = self.closes
    channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { ch in
        ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(CloseRecorder(closes)) }
      }
      .bind(host: host, port: 0).get()
  }
  var port: Int { channel.localAddress?.port ?? 0 }
  /// When the first accepted connection ended, waiting up to `seconds` for it.
  func firstClose(seconds: Double = 3) async -> ContinuousClock.Instant? { await closes.waitForFirst(seconds: seconds) }
  func stop() async { try? await channel.close() }

  private final class CloseRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let closes: DoTRecorder<ContinuousClock.Instant>
    init(_ closes: DoTRecorder<ContinuousClock.Instant>) { self.closes = closes }
    func channelInactive(context: ChannelHandlerContext) {
      closes.append(ContinuousClock.now)
      context.fireChannelInactive()
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
  }
}

/// A query for `name`/`type` with EDNS, as the resolver would build it.
func dotQuery(_ name: String, _ type: RRType, id: UInt16 = 0x1234) throws -> Message {
  var message = Message()
  message.header.id = id
  message.questions = [Question(name: try DNSName(name), type: type)]
  message.edns = EDNS()
  return message
}

/// A loopback TCP listener whose accept queue is full (backlog 0, filled by connections it never
/// accepts): the kernel drops further SYNs, so a new connect to it stalls until the client gives up.
final class FullBacklogListener {
  let port: Int
  private var fds: [Int32] = []

  init(host: String = "127.0.0.1") throws {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard listener >= 0 else { throw TransportError.io("socket: \(errno)") }
    fds.append(listener)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr(host)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard bound == 0, listen(listener, 0) == 0 else { throw TransportError.io("bind/listen: \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
    }
    port = Int(UInt16(bigEndian: address.sin_port))
    // Fill the queue: connections that complete the TCP handshake and are never accepted.
    for _ in 0..<4 {
      let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
      guard c >= 0 else { continue }
      fds.append(c)
      _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
    }
    // Let the fillers' handshakes finish before a test connects.
    usleep(100_000)
  }

  deinit { for fd in fds { close(fd) } }
}

import ArgumentParser
import Authority
import Foundation
import Logging
import NIOCore
import NIOPosix
import Resolver
import TUI

/// `sotto demo`: a DNS hierarchy served inside this process on 127.77.0.0/16 (Sotto's own Do53,
/// DoT and DoQ responders), the resolver pointed at it, synthetic client traffic, and the
/// dashboard. No root, no network beyond loopback, nothing installed but Sotto.
struct Demo: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo",
    abstract: "Run Sotto against a built-in loopback DNS hierarchy with synthetic traffic, in the dashboard.",
    discussion: """
      The hierarchy (a root, the TLDs test. and demo., a dozen zones) covers every case the \
      dashboard shows: Do53 only, DoT, DoQ, both, 853 refused, 853 silent, an expired \
      certificate, sessions that break, a slow server. Zone data is built in; --zones DIR reads \
      DIR/<zone>.zone instead (root.zone for the root; --write-zones DIR writes the built-in ones). \
      Without a terminal, plain-text snapshots are printed (--count, --interval).
      """)

  @Option(name: .long, help: "Client queries per second of the synthetic load (0: none).")
  var rate: Double = 5

  @Option(name: .long, help: "Read the zones from DIR/<zone>.zone instead of the built-in data.")
  var zones: String?

  @Option(name: .long, help: "Write the built-in zone files into DIR and exit.")
  var writeZones: String?

  @Option(name: .long, help: "Dashboard redraws per second.")
  var fps: Double = 4

  @Option(name: .long, help: "Plain-text mode: number of snapshots to print (0 = until interrupted).")
  var count: Int = 0

  @Option(name: .long, help: "Plain-text mode: seconds between snapshots.")
  var interval: Double = 2

  @Option(name: .long, help: "Log file (default: a file in the temporary directory while the dashboard runs).")
  var logFile: String?

  @Option(name: .long, help: "Seconds a failed probe is remembered before probing again (short for the demo).")
  var damping: Double = 60

  func validate() throws {
    guard rate >= 0, rate <= 10_000 else { throw ValidationError("--rate must be in [0, 10000], got \(rate)") }
    guard fps > 0, fps <= 60 else { throw ValidationError("--fps must be in (0, 60], got \(fps)") }
    guard count >= 0 else { throw ValidationError("--count must not be negative") }
    guard interval > 0 else { throw ValidationError("--interval must be positive") }
    guard damping >= 1 else { throw ValidationError("--damping must be at least 1 second") }
  }

  func run() async throws {
    if let writeZones {
      try Self.write(zonesTo: writeZones)
      return
    }
    let texts = try zones.map(Self.readZones)
    let interactive = Dashboard.terminalUsable
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-demo-\(getpid())")
    try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }

    let group = MultiThreadedEventLoopGroup.singleton
    var base = Settings()
    // The log goes to a file while the dashboard is on screen; plain-text mode keeps stderr quiet.
    base[.logLevel] = .string(interactive || logFile != nil ? "info" : "warning")
    base[.logFile] = logFile.map(ConfigValue.string)
    let fallback = interactive ? work.appendingPathComponent("sotto-demo.log").path : nil
    let logSink = try ResolverOptions.bootstrapLogging(Settings.defaults.merging(base), fallbackFile: fallback)
    defer { withExtendedLifetime(logSink) {} }
    let logger = Logger(label: "sotto.demo")

    let lab: DemoLab
    do {
      lab = try await DemoLab.start(group: group, zones: texts, logger: logger)
    } catch {
      throw ValidationError("cannot start the demo servers: \(error)")
    }
    let hints = work.appendingPathComponent("root.hints").path
    let ca = work.appendingPathComponent("demo-ca.pem").path
    try lab.rootHintsText.write(toFile: hints, atomically: true, encoding: .utf8)
    try lab.caPEM.write(toFile: ca, atomically: true, encoding: .utf8)

    var s = base
    s[.rootHints] = .string(hints)
    s[.allowLoopback] = .bool(true)
    s[.do53Port] = .int(lab.do53Port)
    s[.encryptedPort] = .int(lab.encryptedPort)
    s[.tlsCAFile] = .string(ca)
    s[.probeTimeout] = .number(1)
    s[.damping] = .number(damping)
    s[.listen] = .strings(["127.0.0.1:0"])
    let settings = Settings.defaults.merging(s)

    let running: RunningResolver
    do {
      running = try await RunningResolver.start(settings, logger: logger)
    } catch {
      await lab.stop()
      throw error
    }
    var load: DemoLoad?
    if rate > 0, let target = running.bound.first {
      load = try? await DemoLoad.start(
        group: group, target: target, rate: rate, zones: lab.servers.map(\.zone))
    }
    let listen = running.bound.map(Top.describe).joined(separator: ", ")
    logger.notice(
      "demo: resolver listening on \(listen); \(lab.servers.count) servers on 127.77.0.0/16, Do53 port \(lab.do53Port), DoT/DoQ port \(lab.encryptedPort); load \(rate) q/s"
    )
    if !interactive {
      print(
        "sotto demo: resolver on \(listen) (try: dig @\(running.bound.first.flatMap(\.ipAddress) ?? "127.0.0.1") -p \(running.bound.first?.port ?? 0) www.dot.test); "
          + "\(lab.servers.count) demo servers on 127.77.0.0/16, Do53 port \(lab.do53Port), DoT/DoQ port \(lab.encryptedPort)"
      )
    }
    await Top.show(
      LocalSource(stack: running.stack), interactive: interactive, fps: fps, count: count, interval: interval)
    await load?.stop()
    await running.stop()
    await lab.stop()
  }

  /// File name of a zone: "root.zone" for the root, else the origin without its dot + ".zone".
  static func fileName(_ origin: String) -> String {
    origin == "." ? "root.zone" : String(origin.dropLast(origin.hasSuffix(".") ? 1 : 0)) + ".zone"
  }

  static func write(zonesTo dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let texts = DemoZones.texts()
    for (origin, text) in texts {
      try text.write(
        toFile: (dir as NSString).appendingPathComponent(fileName(origin)), atomically: true, encoding: .utf8)
    }
    print("wrote \(texts.count) zone files to \(dir)")
  }

  static func readZones(_ dir: String) throws -> [String: String] {
    var out: [String: String] = [:]
    for origin in Set(DemoServer.all.map(\.zone)) {
      let path = (dir as NSString).appendingPathComponent(fileName(origin))
      guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("--zones: cannot read \(path) (zone \(origin))")
      }
      out[origin] = text
    }
    return out
  }
}

import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import Resolver
import TUI

/// `sotto top` (and `sotto` alone): the resolver with its listener and the live dashboard in one
/// process, or with `--attach` the dashboard of a running `sotto serve --control`.
struct Top: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "top",
    abstract: "Run the resolver with a live dashboard (or attach to a running one with --attach).",
    discussion: """
      Without a usable terminal (stdout not a TTY, TERM unset or dumb) plain-text snapshots are \
      printed instead, --count of them, --interval seconds apart. Logs go to --log-file while the \
      dashboard is on screen.
      """)

  @Option(name: .long, help: "Show the resolver behind this control socket instead of starting one.")
  var attach: String?

  @OptionGroup var listenerOptions: ListenerOptions

  @Option(name: .long, help: "Dashboard redraws per second.")
  var fps: Double = 4

  @Option(name: .long, help: "Plain-text mode: number of snapshots to print (0 = until interrupted).")
  var count: Int = 0

  @Option(name: .long, help: "Plain-text mode: seconds between snapshots.")
  var interval: Double = 2

  @OptionGroup var resolverOptions: ResolverOptions

  func validate() throws {
    guard fps > 0, fps <= 60 else { throw ValidationError("--fps must be in (0, 60], got \(fps)") }
    guard count >= 0 else { throw ValidationError("--count must not be negative") }
    guard interval > 0 else { throw ValidationError("--interval must be positive") }
  }

  func run() async throws {
    let interactive = Dashboard.terminalUsable
    let settings = try resolverOptions.settings(listener: listenerOptions)
    // The terminal belongs to the dashboard: logs go to a file then.
    let fallback = interactive ? (NSTemporaryDirectory() as NSString).appendingPathComponent("sotto-top.log") : nil
    let logSink = try ResolverOptions.bootstrapLogging(settings, fallbackFile: fallback)
    let hangup = HangupReopener(logSink)
    defer { withExtendedLifetime(hangup) {} }
    let logger = Logger(label: "sotto")
    if let attach {
      let source: AttachedSource
      do { source = try AttachedSource(path: attach) } catch { throw ValidationError(error.description) }
      try await show(source, interactive: interactive)
      return
    }
    let running = try await RunningResolver.start(settings, logger: logger)
    hangup.onHangup { running.reloadTLSWaiting(settings, logger: logger) }
    do {
      try await show(LocalSource(stack: running.stack), interactive: interactive)
    } catch {}
    // No event-loop shutdown: probes may still run on the loops (that crashed one-shot lookups).
    await running.stop()
  }

  func show(_ source: any DashboardSource, interactive: Bool) async throws {
    await Self.show(source, interactive: interactive, fps: fps, count: count, interval: interval)
  }

  /// The dashboard, or (no usable terminal) plain-text snapshots until `count` is reached (0: until
  /// SIGINT/SIGTERM). Shared by `top` and `demo`.
  static func show(_ source: any DashboardSource, interactive: Bool, fps: Double, count: Int, interval: Double) async {
    if interactive, await Dashboard(source: source, framesPerSecond: fps).run() { return }
    let report = Task {
      await Dashboard.plainReport(source: source, count: count == 0 ? Int.max : count, interval: interval)
    }
    if count == 0 {
      await Serve.waitForTermination()
      report.cancel()
    } else {
      await report.value
    }
  }

  /// `127.0.0.1:5300`, `[::1]:5300`.
  static func describe(_ address: SocketAddress) -> String {
    guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
    return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
  }

  /// Starts the control socket when a path is given.
  static func startControl(_ path: String?, stack: ResolverStack, group: any EventLoopGroup, logger: Logger)
    async throws
    -> ControlServer?
  {
    guard let path else { return nil }
    let server = ControlServer(path: path, handler: ControlHandler(stack: stack), group: group, logger: logger)
    do {
      try await server.start()
    } catch {
      throw ValidationError("cannot open control socket \(path): \(error)")
    }
    return server
  }
}

import CNcurses
import Foundation
import Resolver

/// Where the dashboard gets its data and sends operator actions: the resolver in this process or
/// a `sotto serve --control` socket. Called only from the dashboard thread.
public protocol DashboardSource: AnyObject, Sendable {
  /// The latest snapshot, nil when not available (yet).
  func snapshot() -> MonitorSnapshot?
  /// Sends a control request; `reply` gets the JSON response line, on any thread.
  func send(_ request: ControlRequest, reply: @escaping @Sendable (String) -> Void)
  /// Shown in the header when attached to another process.
  var label: String? { get }
}

/// The resolver in this process.
public final class LocalSource: DashboardSource {
  let stack: ResolverStack
  let handler: ControlHandler
  public init(stack: ResolverStack) {
    self.stack = stack
    handler = ControlHandler(stack: stack)
  }
  public func snapshot() -> MonitorSnapshot? { stack.snapshot() }
  public func send(_ request: ControlRequest, reply: @escaping @Sendable (String) -> Void) {
    let handler = self.handler
    Task { reply(await handler.respond(to: request)) }
  }
  public var label: String? { nil }
}

/// A resolver behind a control socket; reconnects when the connection drops.
/// Only the dashboard thread uses it (hence unchecked).
public final class AttachedSource: DashboardSource, @unchecked Sendable {
  let path: String
  private var client: ControlClient?
  public private(set) var lastError: String?

  public init(path: String) throws(ControlClientError) {
    self.path = path
    client = try ControlClient(path: path)
  }

  private func withClient<T>(_ body: (ControlClient) throws(ControlClientError) -> T) -> T? {
    do {
      if client == nil { client = try ControlClient(path: path, timeout: 15) }
      let value = try body(client!)
      lastError = nil
      return value
    } catch {
      lastError = error.description
      client = nil
      return nil
    }
  }

  public func snapshot() -> MonitorSnapshot? { withClient { c throws(ControlClientError) in try c.snapshot() } }

  public func send(_ request: ControlRequest, reply: @escaping @Sendable (String) -> Void) {
    let line = (try? JSONEncoder().encode(request)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    let response = withClient { c throws(ControlClientError) in try c.send(line: line) }
    reply(response ?? "{\"ok\":false,\"error\":\"\(lastError ?? "no connection")\"}")
  }

  public var label: String? { path }
}

/// The dashboard: one dedicated thread runs ncurses, copies a snapshot each frame and sends
/// operator actions through the source.
public final class Dashboard: Sendable {
  let source: any DashboardSource
  let frameInterval: Double

  public init(source: any DashboardSource, framesPerSecond: Double = 4) {
    self.source = source
    frameInterval = 1 / max(0.5, min(60, framesPerSecond))
  }

  /// True when the terminal can show the dashboard (else use `plainReport`).
  public static var terminalUsable: Bool { CursesScreen.usable() }

  /// Runs the dashboard on its own thread until the user quits; returns false if curses could
  /// not start (unknown TERM), in which case nothing was drawn.
  public func run() async -> Bool {
    await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
      let thread = Thread { [self] in
        // Named from inside: on Linux a name set before `start` does not reach the kernel, and
        // the thread would show in top, perf and /proc under its starter's name.
        nameCurrentThread("sotto-dashboard")
        c.resume(returning: self.loop())
      }
      thread.stackSize = 4 << 20
      thread.start()
    }
  }

  func loop() -> Bool {
    let wantColors = (ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty
    interruptRequested.store(false, ordering: .relaxed)
    let previousInt = signal(SIGINT) { _ in interruptRequested.store(true, ordering: .relaxed) }
    let previousTerm = signal(SIGTERM) { _ in interruptRequested.store(true, ordering: .relaxed) }
    defer {
      signal(SIGINT, previousInt)
      signal(SIGTERM, previousTerm)
    }
    guard let screen = CursesScreen(wantColors: wantColors) else { return false }
    defer { screen.end() }
    let inbox = StateLock<[(Purpose, String)]>([])
    var state = DashboardState()
    state.colors = screen.colors
    var snap = source.snapshot()
    var nextFrame = Date().timeIntervalSince1970
    var idleErrors = 0
    while !interruptRequested.load(ordering: .relaxed) {
      let now = Date().timeIntervalSince1970
      for (purpose, response) in inbox.withLock({ r in
        defer { r.removeAll() }
        return r
      }) {
        state.apply(response: response, for: purpose)
        if !state.paused { nextFrame = now }  // show the effect at once
      }
      if now >= nextFrame {
        if !state.paused || snap == nil, let fresh = source.snapshot() { snap = fresh }
        nextFrame = now + frameInterval
      }
      screen.syncSize()
      let (w, h) = screen.size
      let renderer = Renderer(width: w, height: h)
      state.pageRows = renderer.bodyRows - 1
      var lines = renderer.frame(state, snap, attached: source.label)
      if let attached = source as? AttachedSource, let err = attached.lastError, h > 2 {
        lines[h - 2] = Line(" " + err, .bad)
      }
      screen.draw(lines)
      let wait = Int(max(0, nextFrame - Date().timeIntervalSince1970) * 1000)
      switch screen.read(timeoutMs: max(1, wait)) {
      case .none:
        // No key: if the terminal went away, leave.
        if wait == 0 { break }
        idleErrors += 1
        if idleErrors > 3, isatty(0) == 0 { return true }
      case .some(nil):
        continue
      case .some(.some(let key)):
        idleErrors = 0
        guard let current = snap ?? source.snapshot() else {
          if key == .char("q") || key == .interrupt { return true }
          continue
        }
        for effect in state.handle(key, snapshot: current) {
          switch effect {
          case .quit: return true
          case .send(let request, let purpose):
            source.send(request) { response in inbox.withLock { $0.append((purpose, response)) } }
          }
        }
      }
    }
    return true
  }

  /// Plain-text snapshots for a pipe or an unusable terminal (like `top -b`): `count` reports
  /// `interval` seconds apart, no escape codes.
  public static func plainReport(source: any DashboardSource, count: Int, interval: Double, width: Int = 120) async {
    for i in 0..<max(1, count) {
      if i > 0 {
        // Cancelled (SIGINT/SIGTERM): stop. Swallowing the cancellation made every later sleep
        // return at once, so the loop printed reports flat out until stdout's pipe filled and the
        // exiting process hung on the stdout lock.
        do { try await Task.sleep(for: .seconds(interval)) } catch { return }
      }
      if Task.isCancelled { return }
      guard let snap = source.snapshot() else {
        print("sotto: no snapshot available")
        continue
      }
      if i > 0 { print("") }
      print(Renderer(width: width, height: 1000).plain(snap))
      fflush(sotto_stdout())
    }
  }
}

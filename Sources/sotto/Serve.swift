import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import Resolver

/// `sotto serve`: the resolver with its client listener, headless, until SIGINT/SIGTERM.
struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Run the resolver and answer clients over UDP and TCP (DoT with --listen-tls, DoQ with --listen-quic) until SIGINT or SIGTERM."
  )

  @OptionGroup var listenerOptions: ListenerOptions

  @OptionGroup var resolverOptions: ResolverOptions

  func run() async throws {
    let settings = try resolverOptions.settings(listener: listenerOptions)
    let logSink = try ResolverOptions.bootstrapLogging(settings)
    let hangup = HangupReopener(logSink)
    let logger = Logger(label: "sotto")
    Self.takeOverConcurrency(threads: settings.int(.threads))
    let running = try await RunningResolver.start(settings, logger: logger)
    hangup.onHangup { running.reloadTLSWaiting(settings, logger: logger) }
    logger.notice("sotto listening on \(running.bound.map { "\($0)" }.joined(separator: ", "))")
    await Self.waitForTermination()
    logger.notice("sotto stopping")
    await running.stop()
    logger.notice("sotto stopped")
    withExtendedLifetime(hangup) {}
    // The process exits now; probes still in flight die with it (their state was saved as pending,
    // which a restart treats as unknown).
  }

  /// Sizes the event-loop group (`server.threads`, 0: one per core) and makes it Swift
  /// Concurrency's global executor, so resolutions run on the threads that do their I/O instead of
  /// hopping between the Dispatch pool and the event loops. Before the group is first used.
  static func takeOverConcurrency(threads: Int) {
    if threads > 0 { NIOSingletons.groupLoopCountSuggestion = threads }
    NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
  }

  /// Parses `127.0.0.1:5300`, `[::1]:5300` or `::1` style listen addresses.
  static func parseListen(_ text: String, flag: String = "--listen", defaultPort: Int = 53) throws -> SocketAddress {
    var host = text
    var port = defaultPort
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
      host = String(text[text.index(after: text.startIndex)..<close])
      let rest = text[text.index(after: close)...]
      if rest.hasPrefix(":") {
        guard let p = Int(rest.dropFirst()) else { throw ValidationError("bad port in \(flag) \(text)") }
        port = p
      }
    } else if text.filter({ $0 == ":" }).count == 1, let colon = text.lastIndex(of: ":") {
      host = String(text[..<colon])
      guard let p = Int(text[text.index(after: colon)...]) else {
        throw ValidationError("bad port in \(flag) \(text)")
      }
      port = p
    }
    guard (0...65535).contains(port) else { throw ValidationError("port out of range in \(flag) \(text)") }
    do {
      return try SocketAddress(ipAddress: host, port: port)
    } catch {
      throw ValidationError("\(flag) \(text): '\(host)' is not an IP address")
    }
  }

  /// Suspends until SIGINT or SIGTERM arrives.
  static func waitForTermination() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let queue = DispatchQueue(label: "sotto.signals")
      let once = SignalOnce(continuation)
      for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        source.setEventHandler { once.fire() }
        source.resume()
        once.keep(source)
      }
    }
  }
}

/// Resumes a continuation exactly once and keeps the signal sources alive.
final class SignalOnce: @unchecked Sendable {
  private var continuation: CheckedContinuation<Void, Never>?
  private var sources: [any DispatchSourceSignal] = []
  private let lock = NSLock()
  init(_ c: CheckedContinuation<Void, Never>) { continuation = c }
  func keep(_ s: any DispatchSourceSignal) { lock.withLock { sources.append(s) } }
  func fire() {
    let c = lock.withLock { () -> CheckedContinuation<Void, Never>? in
      defer { continuation = nil }
      return continuation
    }
    c?.resume()
  }
}

import ArgumentParser
import Foundation
import Logging
import Resolver

/// Appends log lines to a file that SIGHUP can reopen (after log rotation).
struct FileLogHandler: LogHandler {
  /// The open file, shared by every logger; `reopen()` swaps it under the lock.
  final class Sink: @unchecked Sendable {
    let path: String
    private var handle: FileHandle
    private let lock = NSLock()

    init(path: String) throws {
      self.path = path
      handle = try Self.open(path)
    }

    func write(_ s: String) { lock.withLock { handle.write(Data(s.utf8)) } }

    /// Closes the file and opens `path` again (creating it), keeping the old one on failure.
    func reopen() {
      guard let fresh = try? Self.open(path) else { return }
      lock.withLock {
        try? handle.close()
        handle = fresh
      }
    }

    static func open(_ path: String) throws -> FileHandle {
      if !FileManager.default.fileExists(atPath: path) {
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        else { throw ValidationError("cannot create log file \(path)") }
      }
      guard let handle = FileHandle(forWritingAtPath: path) else {
        throw ValidationError("cannot open log file \(path)")
      }
      handle.seekToEndOfFile()
      return handle
    }
  }

  let label: String
  let sink: Sink
  var logLevel: Logger.Level
  var metadata: Logger.Metadata = [:]

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  /// Routes all loggers to `path`; returns the sink so SIGHUP can reopen it.
  @discardableResult
  static func bootstrap(path: String, level: Logger.Level) throws -> Sink {
    let sink = try Sink(path: path)
    LoggingSystem.bootstrap { label in FileLogHandler(label: label, sink: sink, logLevel: level) }
    return sink
  }

  func log(event: LogEvent) {
    var all = metadata
    if let extra = event.metadata { all.merge(extra) { _, b in b } }
    let meta =
      all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    sink.write(
      "\(ISOTimestamp.format(Date().timeIntervalSince1970) ?? "?") \(event.level) \(label): \(event.message)\(meta)\n")
  }
}

/// On every SIGHUP, for as long as it is kept: reopens the log file and runs the actions added
/// with `onHangup` (the DoT/DoQ certificate reload); with neither, SIGHUP does nothing (so
/// `systemctl reload` never kills the resolver).
final class HangupReopener: @unchecked Sendable {
  private let source: any DispatchSourceSignal
  private let actions = HangupActions()

  init(_ sink: FileLogHandler.Sink?) {
    signal(SIGHUP, SIG_IGN)
    source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "sotto.sighup"))
    let actions = self.actions  // not `self`: a SIGHUP may be handled while this is freed
    source.setEventHandler {
      sink?.reopen()
      for action in actions.all { action() }
    }
    source.resume()
  }

  /// Runs `action` on every later SIGHUP, after the log file was reopened; one SIGHUP's actions
  /// finish before the next SIGHUP's start (a serial queue).
  func onHangup(_ action: @escaping @Sendable () -> Void) { actions.add(action) }

  deinit { source.cancel() }
}

/// The actions `HangupReopener` runs, behind a lock.
final class HangupActions: @unchecked Sendable {
  private let lock = NSLock()
  private var actions: [@Sendable () -> Void] = []
  func add(_ action: @escaping @Sendable () -> Void) { lock.withLock { actions.append(action) } }
  var all: [@Sendable () -> Void] { lock.withLock { actions } }
}

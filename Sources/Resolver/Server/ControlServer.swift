import Foundation
import Logging
import NIOCore
import NIOPosix

/// The control socket: a Unix-domain stream socket (mode 0600) speaking `ControlProtocol`'s
/// line-based JSON. Each connection is served in order, one response line per request line; a
/// bad request gets an error line and the connection stays open.
public final class ControlServer: Sendable {
  /// Longest request line accepted; longer ones get an error and the connection is closed.
  public static let maxLine = 64 * 1024

  let path: String
  let handler: ControlHandler
  let group: any EventLoopGroup
  let logger: Logger
  let channel = StateLock<(any Channel)?>(nil)
  let acceptLoop = StateLock<Task<Void, Never>?>(nil)

  public init(path: String, handler: ControlHandler, group: any EventLoopGroup, logger: Logger) {
    self.path = path
    self.handler = handler
    self.group = group
    self.logger = logger
  }

  /// Binds the socket (replacing a stale socket file) and starts serving. The socket is bound
  /// under a temporary name, set to mode 0600 and then renamed, so `path` never exists with a
  /// looser mode, not even for a moment.
  public func start() async throws {
    try Self.removeStaleSocket(path)
    let staging = path + ".new"
    try Self.removeStaleSocket(staging)
    let server = try await ServerBootstrap(group: group)
      .bind(unixDomainSocketPath: staging) { child in
        child.eventLoop.makeCompletedFuture {
          try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child)
        }
      }
    guard chmod(staging, 0o600) == 0 else {
      let code = errno
      try? await server.channel.close()
      unlink(staging)
      throw ControlError.cannotChmod(staging, code)
    }
    guard rename(staging, path) == 0 else {
      let code = errno
      try? await server.channel.close()
      unlink(staging)
      throw ControlError.cannotRename(staging, path, code)
    }
    channel.withLock { $0 = server.channel }
    let handler = self.handler
    let logger = self.logger
    let task = Task {
      await withDiscardingTaskGroup { group in
        do {
          try await server.executeThenClose { inbound in
            for try await connection in inbound {
              group.addTask { await Self.serve(connection, handler: handler, logger: logger) }
            }
          }
        } catch {
          logger.debug("control socket closed: \(error)")
        }
      }
    }
    acceptLoop.withLock { $0 = task }
    logger.info("control socket at \(path)")
  }

  /// Removes a socket file left at `path` by an earlier run; anything else there is an error.
  static func removeStaleSocket(_ path: String) throws {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw ControlError.notASocket(path) }
    unlink(path)
  }

  /// Closes the socket and removes its file.
  public func stop() async {
    let ch = channel.withLock { c in
      defer { c = nil }
      return c
    }
    try? await ch?.close()
    acceptLoop.withLock { $0?.cancel() }
    unlink(path)
  }

  static func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, handler: ControlHandler, logger: Logger)
    async
  {
    do {
      try await connection.executeThenClose { inbound, outbound in
        var pending: [UInt8] = []
        for try await var buffer in inbound {
          pending += buffer.readBytes(length: buffer.readableBytes) ?? []
          while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: pending[..<nl], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            pending.removeSubrange(...nl)
            guard !line.isEmpty else { continue }
            let reply = await handler.respond(to: line)
            try await outbound.write(ByteBuffer(string: reply + "\n"))
          }
          if pending.count > maxLine {
            try await outbound.write(
              ByteBuffer(string: ControlHandler.failure("request line longer than \(maxLine) bytes") + "\n"))
            return
          }
        }
      }
    } catch {
      logger.debug("control connection ended: \(error)")
    }
  }
}

/// Why the control socket could not start.
public enum ControlError: Error, Sendable, CustomStringConvertible {
  case notASocket(String)
  case cannotChmod(String, Int32)
  case cannotRename(String, String, Int32)

  public var description: String {
    switch self {
    case .notASocket(let p): "\(p) exists and is not a socket"
    case .cannotChmod(let p, let e): "cannot set mode 0600 on \(p): \(String(cString: strerror(e)))"
    case .cannotRename(let from, let to, let e):
      "cannot move the control socket \(from) to \(to): \(String(cString: strerror(e)))"
    }
  }
}

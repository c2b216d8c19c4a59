import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A blocking client for the control socket (`sotto ctl`, `sotto top --attach`): one connection,
/// one request line out, one response line back.
public final class ControlClient {
  private let fd: Int32
  private var pending: [UInt8] = []

  /// Connects to the socket at `path`.
  public init(path: String, timeout: Double = 5) throws(ControlClientError) {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw .connect(path, String(cString: strerror(errno))) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
      close(fd)
      throw .connect(path, "path too long")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
      for (i, b) in bytes.enumerated() { raw[i] = b }
      raw[bytes.count] = 0
    }
    let rc = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard rc == 0 else {
      let why = String(cString: strerror(errno))
      close(fd)
      throw .connect(path, why)
    }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    self.fd = fd
  }

  deinit { close(fd) }

  /// Sends one raw request line and returns the response line (without newline).
  public func send(line: String) throws(ControlClientError) -> String {
    let out = Array((line + "\n").utf8)
    var sent = 0
    while sent < out.count {
      let n = out[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      guard n > 0 else { throw .io(String(cString: strerror(errno))) }
      sent += n
    }
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      if let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
        let reply = String(decoding: pending[..<nl], as: UTF8.self)
        pending.removeSubrange(...nl)
        return reply
      }
      let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n == 0 { throw .io("the server closed the connection") }
      if n < 0 { throw .io(errno == EAGAIN ? "no response (timeout)" : String(cString: strerror(errno))) }
      pending += buffer[..<n]
    }
  }

  /// Sends a request and decodes `key` of a successful response as `T`.
  public func request<T: Decodable>(_ request: ControlRequest, key: String, as: T.Type) throws(ControlClientError) -> T
  {
    let data: Data
    do { data = try JSONEncoder().encode(request) } catch { throw .protocolError("cannot encode request") }
    let reply = try send(line: String(decoding: data, as: UTF8.self))
    guard let object = try? JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any] else {
      throw .protocolError("response is not a JSON object: \(reply.prefix(200))")
    }
    guard object["ok"] as? Bool == true else { throw .server(object["error"] as? String ?? "unknown error") }
    guard let value = object[key],
      let inner = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])
    else {
      throw .protocolError("response lacks \"\(key)\"")
    }
    do { return try JSONDecoder().decode(T.self, from: inner) } catch {
      throw .protocolError("bad \"\(key)\": \(error)")
    }
  }

  /// A full snapshot from `stats`, `servers` and `queries`.
  public func snapshot(queries limit: Int = 200) throws(ControlClientError) -> MonitorSnapshot {
    let stats = try request(ControlRequest(cmd: "stats"), key: "stats", as: MonitorStats.self)
    let servers = try request(ControlRequest(cmd: "servers"), key: "servers", as: [ServerSnapshot].self)
    let queries = try request(ControlRequest(cmd: "queries", limit: limit), key: "queries", as: [QueryLogEntry].self)
    return MonitorSnapshot(stats: stats, servers: servers, queries: queries)
  }
}

/// What went wrong talking to the control socket.
public enum ControlClientError: Error, Sendable, CustomStringConvertible {
  case connect(String, String)
  case io(String)
  case protocolError(String)
  case server(String)

  public var description: String {
    switch self {
    case .connect(let p, let why): "cannot connect to control socket \(p): \(why)"
    case .io(let why): "control socket: \(why)"
    case .protocolError(let why): "control socket protocol: \(why)"
    case .server(let why): why
    }
  }
}

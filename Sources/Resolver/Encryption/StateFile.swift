import Foundation

/// The versioned JSON form of the RFC 9539 table (OE-8): persistable fields, counters, failure
/// classes, certificate results, and where each address came from. Times are ISO 8601 UTC.
/// `state` is derived when written and ignored when read.
public struct StateFileDocument: Codable, Sendable {
  public static let currentVersion = 1

  public struct Transport: Codable, Sendable {
    public var state: String
    public var status: String?
    public var initiated: String?
    public var completed: String?
    public var lastResponse: String?
    /// Serialized resumption sessions, base64, newest last.
    public var resumptions: [String]
    public var probes: Probes
    public var failures: [String: Int]
    public var lastFailure: String?
    public var certificate: CertificateCheck?
    public var handshakeMs: Double?
    public var tlsVersion: String?
    public var resumed: Bool
    public var earlyData: Bool?
    /// The edns-tcp-keepalive TIMEOUT of the last response, seconds; absent in older files.
    public var keepalive: Double?

    enum CodingKeys: String, CodingKey {
      case state, status, initiated, completed, lastResponse, resumptions, probes, failures, lastFailure, certificate
      case handshakeMs, tlsVersion, resumed, earlyData, keepalive
    }
    /// Writes absent values as `null` so every field is always present.
    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(state, forKey: .state)
      try c.encode(status, forKey: .status)
      try c.encode(initiated, forKey: .initiated)
      try c.encode(completed, forKey: .completed)
      try c.encode(lastResponse, forKey: .lastResponse)
      try c.encode(resumptions, forKey: .resumptions)
      try c.encode(probes, forKey: .probes)
      try c.encode(failures, forKey: .failures)
      try c.encode(lastFailure, forKey: .lastFailure)
      try c.encode(certificate, forKey: .certificate)
      try c.encode(handshakeMs, forKey: .handshakeMs)
      try c.encode(tlsVersion, forKey: .tlsVersion)
      try c.encode(resumed, forKey: .resumed)
      try c.encode(earlyData, forKey: .earlyData)
      try c.encode(keepalive, forKey: .keepalive)
    }
  }
  public struct Probes: Codable, Sendable {
    public var started, succeeded, failed, timedOut: Int
  }
  public struct Server: Codable, Sendable {
    public var address: String
    public var nsNames: [String]
    public var zones: [String]
    public var firstSeen: String
    public var lastSeen: String
    public var queries: [String: Int]
    public var cleartextWhileGood: Int
    public var dot: Transport?
    public var doq: Transport?

    enum CodingKeys: String, CodingKey {
      case address, nsNames, zones, firstSeen, lastSeen, queries, cleartextWhileGood, dot, doq
    }
    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(address, forKey: .address)
      try c.encode(nsNames, forKey: .nsNames)
      try c.encode(zones, forKey: .zones)
      try c.encode(firstSeen, forKey: .firstSeen)
      try c.encode(lastSeen, forKey: .lastSeen)
      try c.encode(queries, forKey: .queries)
      try c.encode(cleartextWhileGood, forKey: .cleartextWhileGood)
      try c.encode(dot, forKey: .dot)
      try c.encode(doq, forKey: .doq)
    }
  }
  public struct Settings: Codable, Sendable {
    public var persistence: Double
    public var damping: Double
    public var timeout: Double
  }

  public var version: Int
  public var savedAt: String
  public var settings: Settings
  public var servers: [Server]
  /// `LocalAddressWatch.fingerprint()` when saved: tickets from another network are dropped on
  /// load (T-6). Absent in files written before it was kept, and while no address was found.
  public var network: String? = nil
}

/// Why a state file could not be used.
public enum StateFileError: Error, CustomStringConvertible {
  case unreadable(path: String, reason: String)
  case corrupt(path: String, reason: String, backup: String?)
  case unsupportedVersion(path: String, version: Int, backup: String?)
  case writeFailed(path: String, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let p, let r): "state file \(p) cannot be read: \(r)"
    case .corrupt(let p, let r, let b):
      "state file \(p) is corrupt (\(r)); " + (b.map { "moved aside to \($0)" } ?? "could not move it aside")
        + "; starting with empty state"
    case .unsupportedVersion(let p, let v, let b):
      "state file \(p) has unsupported version \(v); " + (b.map { "moved aside to \($0)" } ?? "left in place")
        + "; starting with empty state"
    case .writeFailed(let p, let r): "cannot write state file \(p): \(r)"
    }
  }
}

/// Reads and writes the state file atomically (temp file, fsync, rename).
public enum StateFile {
  static let coderKeys = JSONEncoder.KeyEncodingStrategy.convertToSnakeCase

  /// Builds the document for `table` at `now` (Unix seconds).
  public static func document(_ table: EncryptionTable, now: Double) -> StateFileDocument {
    let s = table.settings
    let servers = table.servers.values.sorted { $0.address < $1.address }.map { r in
      StateFileDocument.Server(
        address: r.address, nsNames: r.nsNames.sorted(), zones: r.zones.sorted(), firstSeen: iso(r.firstSeen),
        lastSeen: iso(r.lastSeen),
        queries: Dictionary(uniqueKeysWithValues: r.queries.map { ($0.key.rawValue, $0.value) }),
        cleartextWhileGood: r.cleartextWhileGood,
        dot: r.transports[.dot].map { transport($0, now: now, settings: s) },
        doq: r.transports[.doq].map { transport($0, now: now, settings: s) })
    }
    return StateFileDocument(
      version: StateFileDocument.currentVersion, savedAt: iso(now),
      settings: .init(persistence: s.persistence, damping: s.damping, timeout: s.timeout), servers: servers)
  }

  static func transport(_ st: TransportState, now: Double, settings: EncryptionSettings) -> StateFileDocument.Transport
  {
    .init(
      state: st.phase(at: now, settings: settings).name, status: st.status?.rawValue, initiated: st.initiated.map(iso),
      completed: st.completed.map(iso), lastResponse: st.lastResponse.map(iso),
      resumptions: st.resumptions.map { Data($0).base64EncodedString() },
      probes: .init(
        started: st.probes.started, succeeded: st.probes.succeeded, failed: st.probes.failed,
        timedOut: st.probes.timedOut),
      failures: st.failures, lastFailure: st.lastFailure, certificate: st.certificate, handshakeMs: st.handshakeMs,
      tlsVersion: st.tlsVersion, resumed: st.resumed, earlyData: st.earlyDataAccepted, keepalive: st.keepalive)
  }

  /// Turns a document back into server records (sessions are never restored).
  public static func records(_ doc: StateFileDocument) -> [ServerRecord] {
    doc.servers.map { s in
      var r = ServerRecord(address: s.address, now: date(s.firstSeen) ?? 0)
      r.lastSeen = date(s.lastSeen) ?? r.firstSeen
      r.nsNames = Set(s.nsNames)
      r.zones = Set(s.zones)
      r.cleartextWhileGood = s.cleartextWhileGood
      for (k, v) in s.queries {
        if let kind = TransportKind(rawValue: k) { r.queries[kind] = v }
      }
      if let t = s.dot { r.transports[.dot] = state(t) }
      if let t = s.doq { r.transports[.doq] = state(t) }
      return r
    }
  }

  static func state(_ t: StateFileDocument.Transport) -> TransportState {
    var st = TransportState()
    st.status = t.status.flatMap(HandshakeStatus.init(rawValue:))
    st.initiated = t.initiated.flatMap(date)
    st.completed = t.completed.flatMap(date)
    st.lastResponse = t.lastResponse.flatMap(date)
    st.resumptions = t.resumptions.compactMap { Data(base64Encoded: $0).map { [UInt8]($0) } }
    st.probes.started = t.probes.started
    st.probes.succeeded = t.probes.succeeded
    st.probes.failed = t.probes.failed
    st.probes.timedOut = t.probes.timedOut
    st.failures = t.failures
    st.lastFailure = t.lastFailure
    st.certificate = t.certificate
    st.handshakeMs = t.handshakeMs
    st.tlsVersion = t.tlsVersion
    st.resumed = t.resumed
    st.earlyDataAccepted = t.earlyData
    st.keepalive = t.keepalive
    return st
  }

  /// Encodes a document as pretty, stable JSON.
  public static func encode(_ doc: StateFileDocument) -> Data {
    let e = JSONEncoder()
    e.keyEncodingStrategy = .convertToSnakeCase
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    return (try? e.encode(doc)) ?? Data("{}".utf8)
  }

  /// Loads a state file. A missing file is empty state; a corrupt one is moved aside and reported.
  public static func load(path: String) throws(StateFileError) -> StateFileDocument? {
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
      throw .unreadable(path: path, reason: "\(error.localizedDescription)")
    }
    do {
      return try decode(data)
    } catch {
      switch error {
      case .unsupportedVersion(let v):
        throw .unsupportedVersion(path: path, version: v, backup: moveAside(path))
      case .corrupt(let reason):
        throw .corrupt(path: path, reason: reason, backup: moveAside(path))
      }
    }
  }

  /// Why `decode` rejected the bytes of a state file.
  public enum DecodeFailure: Error, Equatable {
    case unsupportedVersion(Int)
    case corrupt(String)
  }

  /// Decodes the bytes of a state file (no file system access; the loader and the fuzzer use it).
  public static func decode(_ data: Data) throws(DecodeFailure) -> StateFileDocument {
    let d = JSONDecoder()
    d.keyDecodingStrategy = .convertFromSnakeCase
    struct VersionOnly: Decodable { var version: Int }
    let version: Int
    do {
      version = try d.decode(VersionOnly.self, from: data).version
    } catch {
      throw .corrupt(shortReason(error))
    }
    guard version == StateFileDocument.currentVersion else { throw .unsupportedVersion(version) }
    do {
      return try d.decode(StateFileDocument.self, from: data)
    } catch {
      throw .corrupt(shortReason(error))
    }
  }

  /// Writes atomically: a temp file beside the target, fsync, rename.
  public static func save(_ doc: StateFileDocument, path: String) throws(StateFileError) {
    let tmp = path + ".tmp-\(getpid())"
    let data = encode(doc)
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw .writeFailed(path: path, reason: String(cString: strerror(errno))) }
    let written = data.withUnsafeBytes { buf in write(fd, buf.baseAddress, buf.count) }
    let synced = fsync(fd) == 0
    close(fd)
    guard written == data.count, synced else {
      unlink(tmp)
      throw .writeFailed(path: path, reason: "short write or fsync failed")
    }
    guard rename(tmp, path) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(tmp)
      throw .writeFailed(path: path, reason: reason)
    }
    removeAbandonedTemporaries(of: path)
  }

  /// Deletes `PATH.tmp-PID` files left by writers that were killed mid-save (their PID is gone).
  static func removeAbandonedTemporaries(of path: String) {
    let url = URL(fileURLWithPath: path)
    let prefix = url.lastPathComponent + ".tmp-"
    let dir = url.deletingLastPathComponent().path
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
    for name in names where name.hasPrefix(prefix) {
      guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
      if kill(pid, 0) != 0 && errno == ESRCH {
        unlink((dir as NSString).appendingPathComponent(name))
      }
    }
  }

  static func moveAside(_ path: String) -> String? {
    let backup = "\(path).corrupt-\(Int(Date().timeIntervalSince1970))"
    return rename(path, backup) == 0 ? backup : nil
  }

  static func shortReason(_ error: any Error) -> String {
    if let e = error as? DecodingError {
      switch e {
      case .dataCorrupted(let c): return "not valid JSON: \(c.debugDescription)"
      case .keyNotFound(let k, _): return "missing field '\(k.stringValue)'"
      case .typeMismatch(_, let c), .valueNotFound(_, let c):
        return "bad value at \(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
      @unknown default: return "\(e)"
      }
    }
    return "\(error)"
  }

  /// RFC 3339 with milliseconds, UTC; without ICU (ISOTimestamp.format). A time outside years
  /// 0000...9999 (not a clock's) is written as the epoch.
  static func iso(_ t: Double) -> String {
    ISOTimestamp.format(t, milliseconds: true) ?? "1970-01-01T00:00:00.000Z"
  }

  /// Unix seconds for a timestamp in the file; nil when it is not strict RFC 3339 (never ICU:
  /// its parser crashed on hostile input, see ISOTimestamp).
  static func date(_ s: String) -> Double? { ISOTimestamp.parse(s) }
}

import CNgtcp2Shim
import NIOCore

/// Thin Swift owner of one `doq_engine` (ngtcp2 connection + GnuTLS session). Not thread-safe: every
/// call happens on the exchange engine's thread (`DoQSocketSession`). Frees the engine on deinit.
final class QUICClientEngine {
  /// ngtcp2 error codes the session distinguishes (ngtcp2.h, 0.12).
  enum Code {
    static let draining: Int32 = -231
    static let closing: Int32 = -230
    static let handshakeTimeout: Int32 = -246
    static let idleClose: Int32 = -248
    static let streamIDBlocked: Int32 = -208
  }

  private let raw: OpaquePointer
  /// Kept alive as long as the engine: its GnuTLS session uses the context's credentials.
  private let context: DoQClientContext
  private var scratch = [UInt8](repeating: 0, count: 2048)

  /// Creates the client connection for `remote` as seen from `local`; the server's certificate is
  /// verified against `verifyStore` (the engine holds a reference of its own). Throws `.tlsError`
  /// on setup failure.
  init(
    context: DoQClientContext, verifyStore: OwnedStore, remote: SocketAddress, local: SocketAddress,
    expectedName: String?,
    handshakeTimeout: TimeAmount, idleTimeout: TimeAmount, resumption: [UInt8]?, earlyData: Bool
  ) throws(EncryptedFailure) {
    guard let remoteIP = remote.ipAddress, let remotePort = remote.port, let localIP = local.ipAddress,
      let localPort = local.port
    else { throw .tlsError("DoQ needs IP socket addresses") }
    var message = [CChar](repeating: 0, count: 256)
    let resumptionBytes = resumption ?? []
    let made: OpaquePointer? = remoteIP.withCString { remoteC in
      localIP.withCString { localC in
        withOptionalCString(expectedName) { nameC in
          resumptionBytes.withUnsafeBufferPointer { ticket in
            message.withUnsafeMutableBufferPointer { errorBuffer in
              var config = doq_config()
              config.remote_ip = remoteC
              config.remote_port = UInt16(truncatingIfNeeded: remotePort)
              config.local_ip = localC
              config.local_port = UInt16(truncatingIfNeeded: localPort)
              config.expected_name = nameC
              config.handshake_timeout_ns = UInt64(max(handshakeTimeout.nanoseconds, 1))
              config.idle_timeout_ns = UInt64(max(idleTimeout.nanoseconds, 0))
              config.resumption = ticket.isEmpty ? nil : ticket.baseAddress
              config.resumption_len = ticket.count
              config.enable_early_data = earlyData ? 1 : 0
              config.verify_store = verifyStore.pointer.map { UnsafeMutableRawPointer($0) }
              config.verify_auth_level = context.trust.securityLevel
              return doq_engine_new(context.raw, &config, errorBuffer.baseAddress, errorBuffer.count)
            }
          }
        }
      }
    }
    // Nothing of the server's goes into making the engine. Out of memory is passing and this
    // machine's (`.local`); any other failure would repeat on every attempt, so it damps as before.
    guard let made else {
      let text = Self.text(message)
      throw text.contains("memory") ? .local("QUIC engine: \(text)") : .tlsError(text)
    }
    raw = made
    self.context = context
  }

  deinit { doq_engine_free(raw) }

  /// Feeds one datagram; 0 or a negative ngtcp2 error.
  func read(_ datagram: UnsafeRawBufferPointer) -> Int32 {
    doq_engine_read(raw, datagram.bindMemory(to: UInt8.self).baseAddress, datagram.count)
  }

  enum Output {
    /// A packet was handed to the caller's `send`.
    case packet
    case idle
    case error(Int32)
  }

  /// Writes the next packet into the engine's scratch and hands it to `send` (valid during the call
  /// only: no copy), or tells that there is nothing left (`.idle`) or an ngtcp2 error.
  func nextPacket(_ send: (UnsafeRawBufferPointer) -> Void) -> Output {
    let n = scratch.withUnsafeMutableBufferPointer { doq_engine_write(raw, $0.baseAddress, $0.count) }
    if n < 0 { return .error(Int32(truncatingIfNeeded: n)) }
    if n == 0 { return .idle }
    scratch.withUnsafeBytes { send(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
    return .packet
  }

  /// A CONNECTION_CLOSE packet with application error `code`, or a transport error inferred from `liberr`.
  func closePacket(applicationCode code: UInt64, liberr: Int32 = 0) -> [UInt8]? {
    let n = scratch.withUnsafeMutableBufferPointer {
      doq_engine_write_close(raw, code, liberr, $0.baseAddress, $0.count)
    }
    return n > 0 ? Array(scratch[0..<n]) : nil
  }

  /// Nanoseconds until `handleExpiry` is due; negative when no timer is needed.
  var expiryNanoseconds: Int64 { Int64(doq_engine_expiry_delay(raw)) }

  func handleExpiry() -> Int32 { doq_engine_handle_expiry(raw) }

  /// Opens a stream carrying `bytes` then FIN; the stream ID or a negative ngtcp2 error.
  func submit(_ bytes: [UInt8]) -> Int64 {
    bytes.withUnsafeBufferPointer { doq_engine_submit(raw, $0.baseAddress, $0.count) }
  }

  /// Abandons a stream with STOP_SENDING/RESET_STREAM carrying `code`.
  func cancel(streamID: Int64, code: UInt64) { doq_engine_cancel(raw, streamID, code) }
  /// Cancelled streams still open `nanoseconds` (or three PTOs, if longer) after the cancel (T-39).
  func danglingStreams(olderThan nanoseconds: UInt64) -> Int { doq_engine_dangling(raw, nanoseconds) }

  func nextEvent() -> DoQEngineEvent? {
    var event = doq_event()
    while doq_engine_next_event(raw, &event) != 0 {
      if let decoded = DoQEngineEvent(event) { return decoded }
    }
    return nil
  }

  /// The peer's CONNECTION_CLOSE (after a `draining` read).
  var peerClose: DoQPeerClose {
    var kind: Int32 = 0
    var code: UInt64 = 0
    doq_engine_peer_close(raw, &kind, &code)
    switch kind {
    case 1: return .application(code)
    case 2: return .idle
    default: return .transport(code)
    }
  }

  var handshakeConfirmed: Bool { doq_engine_handshake_confirmed(raw) != 0 }
  var resumed: Bool { doq_engine_resumed(raw) != 0 }
  /// The idle timeout both ends agreed on, in nanoseconds (0: none).
  var idleTimeoutNanoseconds: UInt64 { doq_engine_idle_timeout(raw) }
  var unusableDatagrams: UInt64 { doq_engine_unusable_datagrams(raw) }
  var tlsAlert: UInt8 { doq_engine_tls_alert(raw) }

  /// nil when none was sent, else whether the server accepted it.
  var earlyDataAccepted: Bool? {
    switch doq_engine_early_data_state(raw) {
    case 1: true
    case 0: false
    default: nil
    }
  }

  var alpn: String? {
    var buffer = [CChar](repeating: 0, count: 64)
    let n = buffer.withUnsafeMutableBufferPointer { doq_engine_alpn(raw, $0.baseAddress, $0.count) }
    return n < 0 ? nil : Self.text(buffer)
  }

  /// "TLSv1.3" (OpenSSL's spelling, as DoT reports it).
  var tlsVersion: String {
    var buffer = [CChar](repeating: 0, count: 32)
    buffer.withUnsafeMutableBufferPointer { doq_engine_tls_version(raw, $0.baseAddress, $0.count) }
    let name = Self.text(buffer)
    return name.hasPrefix("TLS1.") ? "TLSv" + name.dropFirst(3) : name
  }

  var certificate: CertificateCheck {
    var subject = [CChar](repeating: 0, count: 512)
    subject.withUnsafeMutableBufferPointer { doq_engine_cert_subject(raw, $0.baseAddress, $0.count) }
    let subjectText = Self.text(subject)
    return DoQCertificateVerdict.check(
      problems: doq_engine_cert_problems(raw), subject: subjectText.isEmpty ? nil : subjectText,
      notAfter: doq_engine_cert_not_after(raw))
  }

  static func describe(_ code: Int32) -> String {
    guard let text = doq_strerror(code) else { return "ngtcp2 error \(code)" }
    return String(cString: text)
  }

  private static func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

/// How the server closed the connection.
enum DoQPeerClose: Equatable {
  case application(UInt64)
  case transport(UInt64)
  case idle
}

private func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
  guard let text else { return body(nil) }
  return text.withCString { body($0) }
}

import COpenSSL

/// One OpenSSL client `SSL` over a pair of memory BIOs: ciphertext goes in with `feed`, comes out with
/// `drainOutput`; no sockets. Not thread-safe: one thread (the exchange engine's) uses it.
final class TLSClientEngine {
  /// What a call into OpenSSL asks the caller to do next.
  enum Step: Equatable {
    /// Needs more bytes from the peer (WANT_READ) — or, for a write, retry after the next read.
    case wantMore
    /// The operation finished (handshake done, or a write consumed).
    case done
    /// The peer sent close_notify.
    case closeNotify
    /// A fatal TLS error or alert.
    case failed(EncryptedFailure)
  }

  /// The SSL ex_data slot that points back at the engine for the new-session callback.
  static let exDataIndex: Int32 = sotto_SSL_get_ex_new_index()
  static let alpnProtocol = "dot"

  private let ssl: OpaquePointer
  /// Owned by `ssl` after SSL_set_bio.
  private let readBIO: OpaquePointer
  private let writeBIO: OpaquePointer
  private let expectedHost: String?
  private let ip: String
  private let onTicket: @Sendable ([UInt8]) -> Void
  /// SSL_read's destination: the largest TLS record's plaintext (16 KiB), allocated once per engine.
  private let readScratch: UnsafeMutableRawBufferPointer

  /// Creates the client side. Never sets SNI (T-2, OE-25); offers ALPN `dot` (T-1); the expected name is
  /// given to verification only. `resumption` is one serialized session to offer (OE-22).
  /// `verifyStore` is the store the certificate is verified against (`TrustStore`).
  init(
    context: DoTClientContext, expectedName: DNSName?, ip: String, resumption: [UInt8]?,
    verifyStore: OwnedStore, onTicket: @escaping @Sendable ([UInt8]) -> Void
  ) throws(EncryptedFailure) {
    ERR_clear_error()
    guard let ssl = SSL_new(context.ctx) else { throw OpenSSLErrorQueue.localFailure("SSL_new failed") }
    if let store = verifyStore.pointer { _ = sotto_SSL_set1_verify_cert_store(ssl, store) }
    guard let readBIO = BIO_new(BIO_s_mem()) else {
      SSL_free(ssl)
      throw OpenSSLErrorQueue.localFailure("BIO_new failed")
    }
    guard let writeBIO = BIO_new(BIO_s_mem()) else {
      BIO_free(readBIO)
      SSL_free(ssl)
      throw OpenSSLErrorQueue.localFailure("BIO_new failed")
    }
    SSL_set_bio(ssl, readBIO, writeBIO)
    // A record's header and body in one BIO_read instead of two (SSL_read about 300 instructions
    // cheaper per answer); `read` asks SSL_has_pending, which counts what was read ahead.
    SSL_set_read_ahead(ssl, 1)
    SSL_set_connect_state(ssl)
    let alpn: [UInt8] = [UInt8(Self.alpnProtocol.utf8.count)] + Array(Self.alpnProtocol.utf8)
    // SSL_set_alpn_protos returns 0 on success.
    guard SSL_set_alpn_protos(ssl, alpn, UInt32(alpn.count)) == 0 else {
      SSL_free(ssl)
      throw OpenSSLErrorQueue.localFailure("cannot set ALPN")
    }
    var host: String? = nil
    if let expectedName, !expectedName.isRoot {
      var text = expectedName.description
      if text.hasSuffix(".") { text.removeLast() }
      host = text
    }
    // Name checks for verification only: X509_VERIFY_PARAM does not send SNI.
    if let param = SSL_get0_param(ssl) {
      if let host {
        _ = X509_VERIFY_PARAM_set1_host(param, host, host.utf8.count)
      } else {
        _ = X509_VERIFY_PARAM_set1_ip_asc(param, ip)
      }
    }
    if let resumption {
      // A ticket that does not decode is simply not used: a full handshake follows.
      _ = TLSSessionTicket.attach(resumption, to: ssl)
    }
    ERR_clear_error()
    self.ssl = ssl
    self.readBIO = readBIO
    self.writeBIO = writeBIO
    self.expectedHost = host
    self.ip = ip
    self.onTicket = onTicket
    // Allocated after the last throw, so a failed init leaks nothing; freed in deinit.
    readScratch = .allocate(byteCount: 16 * 1024, alignment: 16)
    SSL_set_ex_data(ssl, Self.exDataIndex, Unmanaged.passUnretained(self).toOpaque())
  }

  deinit {
    SSL_set_ex_data(ssl, Self.exDataIndex, nil)
    SSL_free(ssl)
    readScratch.deallocate()
  }

  /// Hands ciphertext received from the peer to OpenSSL.
  func feed(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    // A memory BIO grows as needed; a short write would only come from malloc failure.
    _ = BIO_write(readBIO, base, Int32(bytes.count))
  }

  /// True when OpenSSL has ciphertext waiting to be sent.
  var hasOutput: Bool { BIO_ctrl_pending(writeBIO) > 0 }

  /// Appends all ciphertext OpenSSL produced to `buffer` (through the read scratch, which is free
  /// between calls).
  func drainOutput(into buffer: inout [UInt8]) {
    while case let pending = Int(BIO_ctrl_pending(writeBIO)), pending > 0 {
      let read = Int(BIO_read(writeBIO, readScratch.baseAddress, Int32(min(pending, readScratch.count))))
      guard read > 0 else { break }
      buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: readScratch.prefix(read)))
    }
  }

  /// Advances the handshake.
  func handshake() -> Step {
    OpenSSLErrorQueue.clearBeforeCall()
    let rc = SSL_do_handshake(ssl)
    if rc == 1 { return .done }
    return step(forResult: rc, during: "handshake")
  }

  /// Decrypts everything available into `buffer`; returns `.wantMore` when the input is used up.
  /// OpenSSL decrypts into the engine's reused scratch (one TLS record at most); `buffer` grows only by
  /// what arrived, so a ~100-byte DNS answer no longer reserves 16 KiB per read.
  func read(into buffer: inout [UInt8]) -> Step {
    while true {
      OpenSSLErrorQueue.clearBeforeCall()
      let rc = SSL_read(ssl, readScratch.baseAddress, Int32(readScratch.count))
      if rc <= 0 { return step(forResult: rc, during: "read") }
      buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: readScratch.prefix(Int(rc))))
      // No ciphertext left in the BIO and no record buffered in OpenSSL: another SSL_read would
      // only report WANT_READ (and cost a trip through OpenSSL's error handling to say so).
      if BIO_ctrl_pending(readBIO) == 0, SSL_has_pending(ssl) == 0 { return .wantMore }
    }
  }

  /// Encrypts `bytes` completely, or returns `.wantMore` (nothing consumed) to be retried after a read.
  func write(_ bytes: [UInt8]) -> Step {
    guard !bytes.isEmpty else { return .done }
    OpenSSLErrorQueue.clearBeforeCall()
    let rc = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32(clamping: $0.count)) }
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE a successful SSL_write consumes everything.
    if rc > 0 { return .done }
    return step(forResult: rc, during: "write")
  }

  /// Queues our close_notify (read it with `drainOutput`).
  func shutdown() {
    ERR_clear_error()
    _ = SSL_shutdown(ssl)
    ERR_clear_error()
  }

  /// What the finished handshake negotiated, with the certificate check.
  func handshakeInfo(handshakeMs: Double) -> TLSHandshakeInfo {
    var data: UnsafePointer<UInt8>? = nil
    var length: UInt32 = 0
    SSL_get0_alpn_selected(ssl, &data, &length)
    var alpn: String? = nil
    if let data, length > 0 {
      alpn = String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }
    return TLSHandshakeInfo(
      tlsVersion: String(cString: SSL_get_version(ssl)),
      alpn: alpn,
      resumed: SSL_session_reused(ssl) == 1,
      certificate: CertificateEvaluator.evaluate(ssl: ssl, expectedHost: expectedHost, ip: ip),
      handshakeMs: handshakeMs)
  }

  /// Called from the new-session callback while OpenSSL runs one of our calls.
  func receivedSession(_ session: OpaquePointer) {
    guard let bytes = TLSSessionTicket.serialize(session) else { return }
    onTicket(bytes)
  }

  private func step(forResult rc: Int32, during operation: String) -> Step {
    switch SSL_get_error(ssl, rc) {
    case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantMore
    case SSL_ERROR_ZERO_RETURN: return .closeNotify
    case SSL_ERROR_SYSCALL:
      return .failed(OpenSSLErrorQueue.failure(fallback: "unexpected end of TLS stream during \(operation)"))
    default:
      return .failed(OpenSSLErrorQueue.failure(fallback: "TLS \(operation) failed"))
    }
  }
}

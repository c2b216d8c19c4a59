import CNgtcp2Shim

/// Settings shared by all DoQ connections: GnuTLS certificate credentials, and the OpenSSL
/// `TrustStore` certificates are verified against (shared with DoT when the stack builds both).
/// Handshakes never fail on the certificate (OE-26); verification is reported.
public final class DoQClientContext: Sendable {
  /// The C context; GnuTLS credentials are safe to share between sessions once configured.
  nonisolated(unsafe) let raw: OpaquePointer
  /// What each handshake verifies the server's certificate against.
  let trust: TrustStore

  /// Throws `EncryptedFailure.tlsError` if GnuTLS fails.
  public init(trust: TrustStore) throws(EncryptedFailure) {
    var message = [CChar](repeating: 0, count: 256)
    let made = message.withUnsafeMutableBufferPointer { buffer in
      doq_context_new(buffer.baseAddress, buffer.count)
    }
    guard let made else {
      throw .tlsError(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    raw = made
    self.trust = trust
  }

  /// `init(trust:)` with a trust store of its own: the system trust plus `extraCAFile` (PEM).
  /// Throws `EncryptedFailure.tlsError` if the CA file is unreadable or holds no certificate.
  public convenience init(extraCAFile: String? = nil) throws(EncryptedFailure) {
    try self.init(trust: TrustStore(extraCAFile: extraCAFile))
  }

  deinit { doq_context_free(raw) }
}

import CNgtcp2Shim

/// Settings shared by all DoQ connections: GnuTLS certificate credentials (system trust store plus an
/// optional extra CA file). Handshakes never fail on the certificate (OE-26); verification is reported.
public final class DoQClientContext: Sendable {
  /// The C context; GnuTLS credentials are safe to share between sessions once configured.
  nonisolated(unsafe) let raw: OpaquePointer

  /// Reads `extraCAFile` (PEM) and starts building the trust list (system store plus that file) on
  /// a background thread, off the start-up path. Throws `EncryptedFailure.tlsError` if GnuTLS
  /// fails or the CA file is unreadable or holds no certificate.
  public init(extraCAFile: String? = nil) throws(EncryptedFailure) {
    var message = [CChar](repeating: 0, count: 256)
    let made = message.withUnsafeMutableBufferPointer { buffer in
      doq_context_new(extraCAFile, buffer.baseAddress, buffer.count)
    }
    guard let made else {
      throw .tlsError(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    raw = made
  }

  deinit { doq_context_free(raw) }
}

import CNgtcp2Shim

/// Settings shared by all DoQ connections: GnuTLS certificate credentials (system trust store plus an
/// optional extra CA file). Handshakes never fail on the certificate (OE-26); verification is reported.
public final class DoQClientContext: Sendable {
  /// The C context; GnuTLS credentials are safe to share between sessions once configured.
  nonisolated(unsafe) let raw: OpaquePointer
  /// Builds the trust list (system store plus the extra CA file) on a thread of its own: GnuTLS
  /// parses the whole system bundle, 10-15 ms that were on every start-up's way to the first answer.
  private let trust: OffPathWork<Void>

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
    // The thread holds a reference of its own: dropping the context never waits for it.
    doq_context_retain(made)
    let held = ContextReference(made)
    trust = OffPathWork(name: "sotto-doq-trust") {
      doq_context_load_trust(held.raw)
      doq_context_free(held.raw)
    }
  }

  deinit { doq_context_free(raw) }

  /// Suspends until the trust list is built (a handshake's verification would otherwise build it
  /// on the exchange engine's thread, holding up every query), or GnuTLS failed to make one.
  func trustLoaded() async { await trust.value() }

  /// True once the trust list's build has finished, whether or not GnuTLS could make one (tests).
  var isTrustLoaded: Bool { trust.valueIfDone != nil }
}

/// The C context's pointer, handed to the thread that loads its trust list (which holds a reference).
private struct ContextReference: @unchecked Sendable {
  let raw: OpaquePointer
  init(_ raw: OpaquePointer) { self.raw = raw }
}

import COpenSSL

/// Settings shared by all DoT connections (one SSL_CTX per configuration).
/// Handshakes never fail on the certificate (OE-26): verification runs only to be reported.
public final class DoTClientContext: Sendable {
  /// The OpenSSL context; SSL_CTX is safe to share between threads once configured.
  nonisolated(unsafe) let ctx: OpaquePointer
  /// What each connection verifies against (shared with DoQ when the stack builds both).
  let trust: TrustStore

  /// Creates the context: TLS 1.2 minimum, certificates verified against `trust`, client-side
  /// session cache handing every new session to the connection's `onTicket`.
  /// Throws `EncryptedFailure.tlsError` if OpenSSL cannot be initialised.
  public init(trust: TrustStore) throws {
    // No atexit cleanup: a handshake still running on an event loop while the process exits must
    // not find OpenSSL's tables freed under it (that crashed one-shot lookups).
    OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    OPENSSL_init_ssl(0, nil)
    ERR_clear_error()
    guard let ctx = SSL_CTX_new(TLS_client_method()) else {
      throw OpenSSLErrorQueue.failure(fallback: "SSL_CTX_new failed")
    }
    guard sotto_SSL_CTX_set_min_proto_version(ctx, sotto_TLS1_2_VERSION()) == 1 else {
      SSL_CTX_free(ctx)
      throw OpenSSLErrorQueue.failure(fallback: "cannot set the minimum TLS version")
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
    ERR_clear_error()
    _ = sotto_SSL_CTX_set_session_cache_mode(ctx, sotto_SSL_CACHE_CLIENT_NO_INTERNAL_STORE())
    SSL_CTX_sess_set_new_cb(ctx, dotNewSessionCallback)
    self.ctx = ctx
    self.trust = trust
  }

  /// `init(trust:)` with a trust store of its own: the system trust plus `extraCAFile` (PEM, for
  /// labs); `trustDirectory` replaces the system's hashed certificate directory, `trustFile` the
  /// system trust with one bundle (tests). Throws if the CA file cannot be read.
  public convenience init(extraCAFile: String? = nil, trustDirectory: String? = nil, trustFile: String? = nil) throws {
    try self.init(trust: TrustStore(extraCAFile: extraCAFile, trustDirectory: trustDirectory, trustFile: trustFile))
  }

  deinit { SSL_CTX_free(ctx) }
}

/// OpenSSL calls this for every session (ticket) the server sends; the owning engine is found through
/// the SSL's ex_data. Returning 0 leaves the session to OpenSSL, which frees it.
private func dotNewSessionCallback(_ ssl: OpaquePointer?, _ session: OpaquePointer?) -> Int32 {
  guard let ssl, let session, let raw = SSL_get_ex_data(ssl, TLSClientEngine.exDataIndex) else {
    return 0
  }
  Unmanaged<TLSClientEngine>.fromOpaque(raw).takeUnretainedValue().receivedSession(session)
  return 0
}

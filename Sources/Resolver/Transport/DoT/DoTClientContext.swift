import COpenSSL

#if canImport(Glibc)
  import Glibc
#endif

/// Settings shared by all DoT connections (one SSL_CTX per configuration).
/// Handshakes never fail on the certificate (OE-26): verification runs only to be reported.
public final class DoTClientContext: Sendable {
  /// The OpenSSL context; SSL_CTX is safe to share between threads once configured.
  nonisolated(unsafe) let ctx: OpaquePointer
  /// The store each connection verifies against when the system trust is a bundle OpenSSL would
  /// parse whole (nil when the hashed directory serves: OpenSSL reads it a certificate at a time).
  let lazyStore: LazyVerifyStore?

  /// Creates the context: TLS 1.2 minimum, system trust store plus `extraCAFile` (PEM, for labs),
  /// client-side session cache handing every new session to the connection's `onTicket`.
  /// `trustDirectory` replaces the system's hashed certificate directory, `trustFile` the system
  /// trust with one bundle (tests).
  /// Throws `EncryptedFailure.tlsError` if OpenSSL cannot be initialised or the CA file cannot be read.
  public init(extraCAFile: String? = nil, trustDirectory: String? = nil, trustFile: String? = nil) throws {
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
    // A machine without a trust store still gets connections; verification then reports "untrusted-issuer".
    let hashed = trustFile == nil && Self.loadHashedDirectory(ctx, directory: trustDirectory)
    if let extraCAFile {
      guard SSL_CTX_load_verify_locations(ctx, extraCAFile, nil) == 1 else {
        SSL_CTX_free(ctx)
        throw OpenSSLErrorQueue.failure(fallback: "cannot load CA file \(extraCAFile)")
      }
    }
    ERR_clear_error()
    if hashed {
      lazyStore = nil
    } else {
      // The bundle is parsed off the start-up path; the store holds the extra CA file's certificates
      // as read above, so both stores trust the same ones.
      var extra: [OpaquePointer] = []
      if let store = SSL_CTX_get_cert_store(ctx) {
        for index in 0..<sotto_X509_STORE_object_count(store) {
          if let cert = sotto_X509_STORE_certificate_at(store, index) { extra.append(cert) }
        }
      }
      lazyStore = LazyVerifyStore(file: trustFile, extra: extra)
    }
    _ = sotto_SSL_CTX_set_session_cache_mode(ctx, sotto_SSL_CACHE_CLIENT_NO_INTERNAL_STORE())
    SSL_CTX_sess_set_new_cb(ctx, dotNewSessionCallback)
    self.ctx = ctx
  }

  deinit { SSL_CTX_free(ctx) }

  /// The system trust store as a hashed directory, whose certificates OpenSSL reads only when a
  /// chain is verified: parsing the whole bundle (SSL_CTX_set_default_verify_paths) took 27-42 ms
  /// of every start-up. False (nothing loaded: `LazyVerifyStore` takes OpenSSL's defaults off the
  /// start-up path) when SSL_CERT_FILE is set or the directory holds no hashed names (`openssl
  /// rehash` never ran there).
  private static func loadHashedDirectory(_ ctx: OpaquePointer, directory: String?) -> Bool {
    let fromEnvironment = getenv(X509_get_default_cert_dir_env()).map { String(cString: $0) }
    let dir = directory ?? fromEnvironment ?? String(cString: X509_get_default_cert_dir())
    let fileOverride = directory == nil && getenv(X509_get_default_cert_file_env()) != nil
    return !fileOverride && hasHashedNames(dir) && SSL_CTX_load_verify_dir(ctx, dir) == 1
  }

  /// True when one of the `:`-separated directories holds an OpenSSL subject-hash name (`1a2b3c4d.0`).
  static func hasHashedNames(_ dirs: String) -> Bool {
    for dir in dirs.split(separator: ":") {
      guard let handle = opendir(String(dir)) else { continue }
      defer { closedir(handle) }
      while let entry = readdir(handle) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
          String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let parts = name.split(separator: ".")
        if parts.count == 2, parts[0].count == 8, parts[0].allSatisfy(\.isHexDigit),
          parts[1].allSatisfy(\.isNumber)
        {
          return true
        }
      }
    }
    return false
  }
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

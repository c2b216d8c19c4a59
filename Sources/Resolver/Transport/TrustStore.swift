import COpenSSL

#if canImport(Glibc)
  import Glibc
#endif

/// What DoT and DoQ server certificates are verified against (OE-26: the verdict is only
/// reported): the system trust plus an optional extra CA file, as one OpenSSL `X509_STORE` shared
/// by both transports, so that they judge a certificate alike.
///
/// With the system's hashed certificate directory the store is ready at once: OpenSSL reads a CA
/// certificate from it only when a chain needs it. When OpenSSL would parse a whole bundle instead
/// (`SSL_CERT_FILE` set, a directory without hashed names, `trustFile`), a thread of its own does
/// that after start-up (`LazyVerifyStore`) and connections wait for it, suspended. DoQ used to
/// have GnuTLS parse the whole system bundle besides (10-20 ms of CPU at every start).
public final class TrustStore: Sendable {
  /// The store, when ready at once (the hashed directory).
  private let ready: OwnedStore?
  /// The store being built from a bundle otherwise. Two optionals, not an enum of the two: Swift
  /// keeps such an enum's case in the pointer's spare bits, where LeakSanitizer does not
  /// recognise it, and reported the store alive at exit as leaked.
  private let building: LazyVerifyStore?
  /// OpenSSL's security level for TLS clients on this system (Debian's configuration: 2), which
  /// libssl applies to DoT's verification and the DoQ engine to its own.
  let securityLevel: Int32

  /// Reads and checks `extraCAFile` (PEM) now. `trustDirectory` replaces the system's hashed
  /// certificate directory, `trustFile` the system trust with one bundle (tests). Throws
  /// `EncryptedFailure.tlsError` if the CA file is unreadable or holds no certificate. `warn` is
  /// told, once, of a bundle that cannot be used (missing, unreadable, not a regular file, no
  /// certificate in it), possibly later, from the thread that parses it.
  public init(
    extraCAFile: String? = nil, trustDirectory: String? = nil, trustFile: String? = nil,
    warn: @escaping @Sendable (String) -> Void = { _ in }
  ) throws(EncryptedFailure) {
    // No atexit cleanup: a handshake still running while the process exits must not find
    // OpenSSL's tables freed under it (that crashed one-shot lookups).
    OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    OPENSSL_init_ssl(0, nil)
    ERR_clear_error()
    let probe = SSL_CTX_new(TLS_client_method())
    securityLevel = probe.map { SSL_CTX_get_security_level($0) } ?? 0
    SSL_CTX_free(probe)
    guard let store = X509_STORE_new() else { throw OpenSSLErrorQueue.failure(fallback: "X509_STORE_new failed") }
    let owned = OwnedStore(adopting: store)
    if let extraCAFile {
      // A file without a certificate (a CRL alone, say) is an error too.
      guard X509_STORE_load_file(store, extraCAFile) == 1, !Self.certificates(in: store).isEmpty else {
        throw OpenSSLErrorQueue.failure(fallback: "cannot load CA file \(extraCAFile)")
      }
    }
    let dir = trustFile == nil ? Self.hashedDirectory(trustDirectory) : nil
    let bundle = dir == nil ? Self.bundlePath(trustFile) : nil
    let unusable = bundle.flatMap { Self.bundleProblem($0.path, from: $0.source) }
    if let unusable {
      // Not parsed: a FIFO or a device would hold every handshake's wait for ever. OpenSSL's
      // defaults would still add the system's directory; so does this.
      if trustFile == nil {
        let fallback = trustDirectory ?? Self.systemDirectory
        _ = X509_STORE_load_path(store, fallback)
        warn(
          Self.hasHashedNames(fallback)
            ? "\(unusable); certificates are verified against the directory \(fallback) instead"
            : "\(unusable), and \(fallback) holds no hashed certificates: no certificate will verify")
      } else {
        warn("\(unusable); certificates are verified against --tls-ca-file alone")
      }
      ERR_clear_error()
      ready = owned
      building = nil
    } else if let dir {
      // A machine without a trust store still gets connections; verification then reports
      // "untrusted-issuer".
      _ = X509_STORE_load_path(store, dir)
      ERR_clear_error()
      ready = owned
      building = nil
    } else {
      // The bundle is parsed off the start-up path, with the extra CA file's certificates as read
      // above (LazyVerifyStore takes its own references to them while `owned` still holds them).
      ready = nil
      let source = bundle.map { "CA bundle \($0.path) (\($0.source))" } ?? "the CA bundle"
      building = withExtendedLifetime(owned) {
        LazyVerifyStore(file: trustFile, extra: Self.certificates(in: store)) { fromBundle in
          if fromBundle == 0 { warn("\(source) holds no certificate that OpenSSL could read") }
        }
      }
      ERR_clear_error()
    }
  }

  /// The certificates in `store` (not CRLs), borrowed from it.
  private static func certificates(in store: OpaquePointer) -> [OpaquePointer] {
    (0..<sotto_X509_STORE_object_count(store)).compactMap { sotto_X509_STORE_certificate_at(store, $0) }
  }

  /// The store; suspends while a bundle is still being parsed. Its pointer is nil only if OpenSSL
  /// could not make one (verification then reports what it finds).
  func store() async -> OwnedStore {
    // init sets exactly one of the two. They are two optionals, not an enum, because LeakSanitizer
    // does not see a class reference kept in an enum's spare bits; the last fallback is unreachable.
    if let ready { return ready }
    if let building { return await building.store() }
    return OwnedStore(adopting: nil)
  }

  /// True when a bundle is parsed after start-up instead of the hashed directory read on demand (tests).
  var parsesBundle: Bool { building != nil }

  /// The directory to read certificates from on demand: `directory`, or the system's (OpenSSL's
  /// default or `SSL_CERT_DIR`) unless `SSL_CERT_FILE` names another bundle than OpenSSL's
  /// default. Nil when it holds no hashed names (`openssl rehash` never ran there): the bundle is
  /// parsed instead.
  private static func hashedDirectory(_ directory: String?) -> String? {
    let dir = directory ?? systemDirectory
    let fileOverride =
      directory == nil && getenv(X509_get_default_cert_file_env()).map { !isDefaultBundle($0) } == true
    return !fileOverride && hasHashedNames(dir) ? dir : nil
  }

  /// Whether `path` is OpenSSL's default bundle, symbolic links resolved (Debian's
  /// /usr/lib/ssl/cert.pem is /etc/ssl/certs/ca-certificates.crt, which environments such as CI
  /// set as `SSL_CERT_FILE`). That bundle holds the hashed directory's certificates
  /// (update-ca-certificates writes both), so it is read from the directory, unparsed, as when
  /// nothing is set.
  static func isDefaultBundle(_ path: UnsafePointer<CChar>) -> Bool {
    guard let given = realpath(path, nil) else { return false }
    defer { free(given) }
    guard let standard = realpath(X509_get_default_cert_file(), nil) else { return false }
    defer { free(standard) }
    return strcmp(given, standard) == 0
  }

  /// OpenSSL's default certificate directory, or `SSL_CERT_DIR`.
  static var systemDirectory: String {
    getenv(X509_get_default_cert_dir_env()).map { String(cString: $0) } ?? String(cString: X509_get_default_cert_dir())
  }

  /// The bundle a store without the hashed directory parses, and where its name came from.
  static func bundlePath(_ trustFile: String?) -> (path: String, source: String) {
    if let trustFile { return (trustFile, "trust file") }
    if let env = getenv(X509_get_default_cert_file_env()) {
      return (String(cString: env), String(cString: X509_get_default_cert_file_env()))
    }
    return (String(cString: X509_get_default_cert_file()), "OpenSSL's default")
  }

  /// Why the bundle at `path` cannot be parsed, if so: missing, unreadable, or not a regular file
  /// (opening a FIFO would block until a writer came). Checked with `stat`, without reading it.
  static func bundleProblem(_ path: String, from source: String) -> String? {
    var info = stat()
    guard stat(path, &info) == 0 else {
      return "CA bundle \(path) (\(source)) cannot be read: \(String(cString: strerror(errno)))"
    }
    guard info.st_mode & S_IFMT == S_IFREG else {
      return "CA bundle \(path) (\(source)) is not a regular file, so it is not read"
    }
    guard access(path, R_OK) == 0 else {
      return "CA bundle \(path) (\(source)) cannot be read: \(String(cString: strerror(errno)))"
    }
    return nil
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

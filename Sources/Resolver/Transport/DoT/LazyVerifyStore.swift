import COpenSSL
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The X509_STORE that DoT verification uses when OpenSSL would otherwise parse a whole CA
/// bundle at start-up (`SSL_CERT_FILE` set, or a certificate directory without hashed names):
/// 20-40 ms on every start's way to the first answer. A background thread at idle priority
/// builds it; a connection that comes first builds its own rather than wait for that thread (the
/// first store published wins, and is never changed after). The verdict is only reported (OE-26).
final class LazyVerifyStore: Sendable {
  /// The published X509_STORE's address, 0 until one is (a pointer is not Sendable).
  private let published = Mutex<UInt>(0)
  /// `X509_STORE_load_file` on this instead of OpenSSL's default paths (tests).
  private let file: String?
  /// The extra CA certificates, as loaded into the SSL_CTX's store at start-up (each retained).
  nonisolated(unsafe) private let extra: [OpaquePointer]

  /// `extra`: the X509 certificates to trust besides the bundle (retained here).
  init(file: String?, extra: [OpaquePointer]) {
    self.file = file
    for cert in extra { X509_up_ref(cert) }
    self.extra = extra
    let box = Unmanaged.passRetained(self).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(
      &thread, nil,
      { arg in
        guard let arg else { return nil }
        // SCHED_IDLE (5): runs only when nothing else wants the CPU (OpenSSL's own locks aside).
        var none = sched_param()
        _ = pthread_setschedparam(pthread_self(), 5, &none)
        _ = Unmanaged<LazyVerifyStore>.fromOpaque(arg).takeRetainedValue().store()
        return nil
      }, box)
    if rc == 0 {
      pthread_detach(thread)
    } else {
      Unmanaged<LazyVerifyStore>.fromOpaque(box).release()  // the first connection builds it
    }
  }

  deinit {
    if let store = OpaquePointer(bitPattern: published.withLock { $0 }) { X509_STORE_free(store) }
    for cert in extra { X509_free(cert) }
  }

  /// The published store, built and published first if there is none yet; nil if OpenSSL cannot
  /// make one (verification then uses the SSL_CTX's store and reports what it finds).
  func store() -> OpaquePointer? {
    if let store = OpaquePointer(bitPattern: published.withLock { $0 }) { return store }
    guard let mine = X509_STORE_new() else { return nil }
    if let file {
      _ = X509_STORE_load_file(mine, file)
    } else {
      _ = X509_STORE_set_default_paths(mine)
    }
    for cert in extra { _ = X509_STORE_add_cert(mine, cert) }
    ERR_clear_error()
    let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(mine)))
    let winner = published.withLock { current -> UInt in
      if current == 0 { current = address }
      return current
    }
    if winner != address { X509_STORE_free(mine) }  // another thread published first
    return OpaquePointer(bitPattern: winner)
  }
}

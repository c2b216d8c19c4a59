import COpenSSL

/// The X509_STORE that DoT and DoQ verification use (`TrustStore`) when OpenSSL would otherwise
/// parse a whole CA bundle at start-up (`SSL_CERT_FILE` set, or a certificate directory without
/// hashed names): 20-40 ms on every start's way to the first answer. A thread of its own builds
/// it; a connection that comes first waits for it, suspended, before its handshake (building it on
/// the connecting thread blocked a cooperative thread, and so answers, for the whole parse: 100+ ms
/// under AddressSanitizer). The verdict is only reported (OE-26).
final class LazyVerifyStore: Sendable {
  private let work: OffPathWork<OwnedStore>

  /// `file`: `X509_STORE_load_file` on this instead of OpenSSL's default paths (tests).
  /// `extra`: the X509 certificates to trust besides the bundle (retained until the store is built).
  /// `loaded` is told how many certificates (not CRLs) the bundle gave the store, `extra` left out.
  init(file: String?, extra: [OpaquePointer], loaded: @escaping @Sendable (Int) -> Void = { _ in }) {
    for cert in extra { X509_up_ref(cert) }
    let certificates = Certificates(extra)
    work = OffPathWork(name: "sotto-trust") {
      let store = OwnedStore(file: file, extra: certificates.list)
      loaded(store.fromBundle)
      return store
    }
  }

  /// The store; suspends until it is built. Its pointer is nil if OpenSSL could not make one
  /// (DoT's verification then finds no issuer, DoQ's reports "other").
  func store() async -> OwnedStore { await work.value() }
}

/// An X509_STORE freed with its last owner (each SSL and DoQ engine given it takes a reference
/// of its own).
final class OwnedStore: Sendable {
  nonisolated(unsafe) let pointer: OpaquePointer?
  /// Certificates the bundle gave (0 for an adopted store).
  let fromBundle: Int

  /// Builds the store: `file` or OpenSSL's default paths, then `extra` (one reference each given
  /// up here).
  init(file: String?, extra: [OpaquePointer]) {
    let store = X509_STORE_new()
    var fromBundle = 0
    if let store {
      if let file {
        _ = X509_STORE_load_file(store, file)
      } else {
        _ = X509_STORE_set_default_paths(store)
      }
      // Counted before the extra certificates: one that is also in the bundle is not added twice.
      fromBundle = (0..<sotto_X509_STORE_object_count(store)).count {
        sotto_X509_STORE_certificate_at(store, $0) != nil
      }
      for cert in extra { _ = X509_STORE_add_cert(store, cert) }
    }
    self.fromBundle = fromBundle
    for cert in extra { X509_free(cert) }
    ERR_clear_error()
    pointer = store
  }

  /// Takes over `store` (its one reference; nil: no store).
  init(adopting store: OpaquePointer?) {
    pointer = store
    fromBundle = 0
  }

  deinit { if let pointer { X509_STORE_free(pointer) } }
}

/// Certificates handed to the building thread (each already holds a reference for it).
private struct Certificates: @unchecked Sendable {
  let list: [OpaquePointer]
  init(_ list: [OpaquePointer]) { self.list = list }
}

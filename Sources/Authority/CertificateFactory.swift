import COpenSSL
import Foundation

/// A certificate and its private key, both PEM.
public struct CertifiedKey: Sendable {
  public let certificatePEM: String
  public let privateKeyPEM: String

  /// A certificate (PEM, the leaf first, then its chain) and its private key (PEM).
  public init(certificatePEM: String, privateKeyPEM: String) {
    self.certificatePEM = certificatePEM
    self.privateKeyPEM = privateKeyPEM
  }
}

/// Makes a throwaway CA and leaf certificates (EC P-256, SHA-256) with OpenSSL, in memory: for
/// the demo's DoT and DoQ responders, so nothing is read from or written to disk but the CA.
public final class CertificateFactory: @unchecked Sendable {
  // The CA key and certificate are only read after init (signing); OpenSSL objects are not shared
  // across threads concurrently because `issue` serializes on `lock`.
  private let caKey: OpaquePointer
  private let caCert: OpaquePointer
  private let lock = NSLock()
  /// The CA certificate, PEM (give it to the resolver as its extra trust anchor).
  public let caPEM: String

  /// A new CA named `name`, valid from a day ago for ten years.
  public init(name: String = "Sotto demo CA") throws(ResponderError) {
    guard let key = sotto_ec_p256_key() else { throw .tls("cannot make a CA key") }
    guard
      let cert = Self.certificate(
        subject: name, issuer: nil, key: key, signer: key, validFrom: -86_400, validFor: 3_650 * 86_400, sans: [],
        ca: true)
    else {
      EVP_PKEY_free(key)
      throw .tls("cannot make the CA certificate")
    }
    guard let pem = Self.pem(cert) else {
      X509_free(cert)
      EVP_PKEY_free(key)
      throw .tls("cannot encode the CA certificate")
    }
    caKey = key
    caCert = cert
    caPEM = pem
  }

  deinit {
    X509_free(caCert)
    EVP_PKEY_free(caKey)
  }

  /// A leaf for `name` and `ip` (as SANs) signed by the CA. `expired`: its validity ended a year ago.
  public func issue(name: String, ip: String, expired: Bool = false) throws(ResponderError) -> CertifiedKey {
    lock.lock()
    defer { lock.unlock() }
    guard let key = sotto_ec_p256_key() else { throw .tls("cannot make a key for \(name)") }
    defer { EVP_PKEY_free(key) }
    let from: Double = expired ? -2 * 365 * 86_400 : -86_400
    let span: Double = expired ? 365 * 86_400 : 365 * 86_400
    guard
      let cert = Self.certificate(
        subject: name, issuer: caCert, key: key, signer: caKey, validFrom: from, validFor: span,
        sans: ["DNS:\(name)", "IP:\(ip)"], ca: false)
    else { throw .tls("cannot make a certificate for \(name)") }
    defer { X509_free(cert) }
    guard let certPEM = Self.pem(cert), let keyPEM = Self.pem(key: key) else { throw .tls("cannot encode \(name)") }
    return CertifiedKey(certificatePEM: certPEM, privateKeyPEM: keyPEM)
  }

  /// Writes the CA certificate to `path` (for `--tls-ca-file`).
  public func writeCA(to path: String) throws {
    try caPEM.write(toFile: path, atomically: true, encoding: .utf8)
  }

  private static func certificate(
    subject: String, issuer: OpaquePointer?, key: OpaquePointer, signer: OpaquePointer, validFrom: Double,
    validFor: Double, sans: [String], ca: Bool
  ) -> OpaquePointer? {
    guard let x = X509_new() else { return nil }
    var ok = X509_set_version(x, 2) == 1
    ok = ok && ASN1_INTEGER_set(X509_get_serialNumber(x), Int.random(in: 1...Int(Int32.max))) == 1
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), Int(validFrom)) != nil
    ok = ok && X509_gmtime_adj(X509_getm_notAfter(x), Int(validFrom + validFor)) != nil
    ok = ok && X509_set_pubkey(x, key) == 1
    if let name = X509_get_subject_name(x) {
      ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, subject, -1, -1, 0) == 1
      ok = ok && X509_set_issuer_name(x, issuer.map { X509_get_subject_name($0) } ?? name) == 1
    } else {
      ok = false
    }
    var ctx = X509V3_CTX()
    X509V3_set_ctx(&ctx, issuer ?? x, x, nil, nil, 0)
    var exts = [(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE")]
    if ca { exts.append((NID_key_usage, "critical,keyCertSign,cRLSign")) }
    if !sans.isEmpty { exts.append((NID_subject_alt_name, sans.joined(separator: ","))) }
    for (nid, value) in exts where ok {
      guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else {
        ok = false
        break
      }
      ok = X509_add_ext(x, ext, -1) == 1
      X509_EXTENSION_free(ext)
    }
    ok = ok && X509_sign(x, signer, EVP_sha256()) > 0
    guard ok else {
      X509_free(x)
      return nil
    }
    return x
  }

  private static func pem(_ cert: OpaquePointer) -> String? {
    withMemoryBIO { PEM_write_bio_X509($0, cert) == 1 }
  }

  private static func pem(key: OpaquePointer) -> String? {
    withMemoryBIO { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) == 1 }
  }

  private static func withMemoryBIO(_ write: (OpaquePointer) -> Bool) -> String? {
    guard let bio = BIO_new(BIO_s_mem()) else { return nil }
    defer { BIO_free(bio) }
    guard write(bio) else { return nil }
    var data: UnsafeMutablePointer<CChar>? = nil
    let n = sotto_BIO_get_mem_data(bio, &data)
    guard let data, n > 0 else { return nil }
    return String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
  }
}

import COpenSSL
import Foundation

/// Why a TLS server identity could not be set up.
public struct TLSServerError: Error, Sendable, CustomStringConvertible {
  /// What went wrong, for the operator.
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// An OpenSSL server `SSL_CTX` with a certificate chain and its key loaded: TLS 1.2 or 1.3,
/// ALPN `dot` when the client offers it, session tickets. Shared by the client-facing DoT
/// listener and the lab's DoT responders; once configured it may be used from several threads.
/// The DoQ listener takes the same chain and key as PEM (its engine is on GnuTLS).
public final class TLSServerContext: @unchecked Sendable {
  package let ctx: OpaquePointer
  /// The leaf's SubjectPublicKeyInfo digest, SHA-256, base64 (RFC 7858 §4.2 SPKI pin).
  public let spkiPin: String
  /// The chain and key as given (checked by OpenSSL), for the DoQ listener.
  package let certificatePEM: String
  package let privateKeyPEM: String

  /// `certificatePEM` holds the leaf first, then any chain; `privateKeyPEM` the leaf's key.
  public init(certificatePEM: String, privateKeyPEM: String) throws(TLSServerError) {
    let certificates = Self.readCertificates(certificatePEM)
    defer { for certificate in certificates { X509_free(certificate) } }
    guard let leaf = certificates.first else {
      throw TLSServerError("no PEM certificate found")
    }
    // A block that does not parse ends the reading: say so rather than send a shorter chain.
    let blocks = certificatePEM.components(separatedBy: "-----BEGIN CERTIFICATE-----").count - 1
    guard blocks <= certificates.count else {
      throw TLSServerError("certificate \(certificates.count + 1) of the \(blocks) in the file cannot be read")
    }
    guard let key = Self.readKey(privateKeyPEM) else {
      throw TLSServerError(
        privateKeyPEM.contains("ENCRYPTED")
          ? "the private key is encrypted: give it without a passphrase" : "no PEM private key found")
    }
    defer { EVP_PKEY_free(key) }
    guard let pin = Self.spkiPin(of: leaf) else { throw TLSServerError("cannot read the certificate's public key") }
    guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSServerError("SSL_CTX_new failed") }
    // T-4: TLS 1.2 at least.
    _ = sotto_SSL_CTX_set_min_proto_version(ctx, sotto_TLS1_2_VERSION())
    guard SSL_CTX_use_certificate(ctx, leaf) == 1 else {
      SSL_CTX_free(ctx)
      throw TLSServerError("the certificate cannot be used: \(Self.lastError())")
    }
    for extra in certificates.dropFirst() where sotto_SSL_CTX_add1_chain_cert(ctx, extra) != 1 {
      SSL_CTX_free(ctx)
      throw TLSServerError("a chain certificate cannot be used: \(Self.lastError())")
    }
    guard SSL_CTX_use_PrivateKey(ctx, key) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
      SSL_CTX_free(ctx)
      throw TLSServerError("the private key does not match the certificate")
    }
    // T-1: ALPN "dot" when the client offers it (a client that offers none is served too).
    SSL_CTX_set_alpn_select_cb(
      ctx,
      { _, out, outlen, input, inlen, _ -> Int32 in
        // The answer must point into memory that outlives the callback: SSL_select_next_proto
        // returns a pointer into the server's list, which a local array would not be (ASan found
        // that use-after-free), so "dot" is looked up in the client's list (`input`) directly.
        guard let input, let out, let outlen else { return SSL_TLSEXT_ERR_NOACK }
        let count = Int(inlen)
        var i = 0
        while i < count {
          let length = Int(input[i])
          if length == 3, i + 3 < count,
            input[i + 1] == 0x64, input[i + 2] == 0x6F, input[i + 3] == 0x74
          {
            out.pointee = input + i + 1
            outlen.pointee = 3
            return SSL_TLSEXT_ERR_OK
          }
          i += 1 + length
        }
        return SSL_TLSEXT_ERR_NOACK
      }, nil)
    self.ctx = ctx
    self.spkiPin = pin
    self.certificatePEM = certificatePEM
    self.privateKeyPEM = privateKeyPEM
  }

  /// Takes `other`'s session ticket keys: a certificate reloaded on SIGHUP keeps the keys in use,
  /// so DoT clients resume their sessions across it. False when OpenSSL would not copy them.
  @discardableResult
  package func adoptTicketKeys(from other: TLSServerContext) -> Bool {
    sotto_SSL_CTX_copy_ticket_keys(ctx, other.ctx) == 1
  }

  /// Reads the certificate chain and key from PEM files; errors name the file.
  public convenience init(certificateFile: String, keyFile: String) throws(TLSServerError) {
    guard let cert = try? String(contentsOfFile: certificateFile, encoding: .utf8) else {
      throw TLSServerError("cannot read certificate file \(certificateFile)")
    }
    guard let key = try? String(contentsOfFile: keyFile, encoding: .utf8) else {
      throw TLSServerError("cannot read key file \(keyFile)")
    }
    do {
      try self.init(certificatePEM: cert, privateKeyPEM: key)
    } catch {
      throw TLSServerError("\(certificateFile), \(keyFile): \(error.message)")
    }
  }

  deinit { SSL_CTX_free(ctx) }

  private static func readCertificates(_ pem: String) -> [OpaquePointer] {
    withMemoryBIO(pem) { bio in
      var out: [OpaquePointer] = []
      while let cert = PEM_read_bio_X509(bio, nil, nil, nil) { out.append(cert) }
      ERR_clear_error()  // the end of the text reads as "no start line"
      return out
    } ?? []
  }

  private static func readKey(_ pem: String) -> OpaquePointer? {
    // A passphrase callback that gives none: an encrypted key fails instead of prompting.
    let key = withMemoryBIO(pem) { PEM_read_bio_PrivateKey($0, nil, { _, _, _, _ in 0 }, nil) } ?? nil
    ERR_clear_error()
    return key
  }

  private static func withMemoryBIO<T>(_ text: String, _ body: (OpaquePointer) -> T) -> T? {
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { raw -> T? in
      guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(clamping: raw.count)) else { return nil }
      defer { BIO_free(bio) }
      return body(bio)
    }
  }

  /// base64(SHA-256(DER SubjectPublicKeyInfo)) of `cert`.
  private static func spkiPin(of cert: OpaquePointer) -> String? {
    guard let key = X509_get0_pubkey(cert) else { return nil }
    var der: UnsafeMutablePointer<UInt8>? = nil
    let length = i2d_PUBKEY(key, &der)
    guard length > 0, let der else { return nil }
    defer { sotto_OPENSSL_free(der) }
    var digest = [UInt8](repeating: 0, count: 32)
    var size: UInt32 = 0
    guard EVP_Digest(der, Int(length), &digest, &size, EVP_sha256(), nil) == 1, size == 32 else { return nil }
    return Data(digest).base64EncodedString()
  }

  private static func lastError() -> String {
    let code = ERR_get_error()
    guard code != 0 else { return "unknown OpenSSL error" }
    var buffer = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buffer, buffer.count)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

import COpenSSL

/// Builds the informational `CertificateCheck` after a handshake that ran with SSL_VERIFY_NONE (OE-26).
/// OpenSSL's own chain verification stops at its first error, so validity dates and the name are
/// also checked on the leaf directly to report, say, "expired" and "wrong-name" together.
enum CertificateEvaluator {
  static func evaluate(ssl: OpaquePointer, expectedHost: String?, ip: String) -> CertificateCheck {
    guard let leaf = SSL_get1_peer_certificate(ssl) else { return CertificateCheck(problems: ["no-certificate"]) }
    defer { X509_free(leaf) }
    var problems: [String] = []
    let result = SSL_get_verify_result(ssl)
    if result != Int(X509_V_OK) { problems.append(problem(forVerifyResult: result)) }
    if let notAfter = X509_get0_notAfter(leaf), X509_cmp_current_time(notAfter) < 0 { problems.append("expired") }
    if let notBefore = X509_get0_notBefore(leaf), X509_cmp_current_time(notBefore) > 0 {
      problems.append("not-yet-valid")
    }
    let nameMatches: Bool
    if let expectedHost {
      nameMatches = X509_check_host(leaf, expectedHost, expectedHost.utf8.count, 0, nil) == 1
    } else {
      nameMatches = X509_check_ip_asc(leaf, ip, 0) == 1
    }
    if !nameMatches { problems.append("wrong-name") }
    ERR_clear_error()
    var unique: [String] = []
    for p in problems where !unique.contains(p) { unique.append(p) }
    return CertificateCheck(problems: unique, subject: subject(of: leaf), notAfter: notAfter(of: leaf))
  }

  /// Maps X509_V_ERR_* codes to the stable problem names.
  static func problem(forVerifyResult code: Int) -> String {
    switch Int32(truncatingIfNeeded: code) {
    case X509_V_ERR_CERT_HAS_EXPIRED: return "expired"
    case X509_V_ERR_CERT_NOT_YET_VALID: return "not-yet-valid"
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "self-signed"
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
      X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, X509_V_ERR_CERT_UNTRUSTED:
      return "untrusted-issuer"
    case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH: return "wrong-name"
    default: return "other:" + String(cString: X509_verify_cert_error_string(code))
    }
  }

  private static func subject(of leaf: OpaquePointer) -> String? {
    guard let name = X509_get_subject_name(leaf), let text = X509_NAME_oneline(name, nil, 0) else { return nil }
    defer { sotto_OPENSSL_free(text) }
    return String(cString: text)
  }

  private static func notAfter(of leaf: OpaquePointer) -> String? {
    guard let time = X509_get0_notAfter(leaf) else { return nil }
    var t = tm()
    guard ASN1_TIME_to_tm(time, &t) == 1 else { return nil }
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return
      "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))T\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))Z"
  }
}

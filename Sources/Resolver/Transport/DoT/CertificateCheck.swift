/// The verification outcome of a server certificate; informational only (OE-26).
public struct CertificateCheck: Sendable, Hashable, Codable {
  /// Empty when valid; otherwise values from "expired", "not-yet-valid", "self-signed",
  /// "untrusted-issuer", "wrong-name", "no-certificate", "other:<openssl text>".
  public var problems: [String]
  /// The leaf certificate's subject on one line (OpenSSL `X509_NAME_oneline`, e.g. "/CN=ns1.example").
  public var subject: String?
  /// The leaf certificate's notAfter in ISO 8601 (UTC).
  public var notAfter: String?

  public init(problems: [String], subject: String? = nil, notAfter: String? = nil) {
    self.problems = problems
    self.subject = subject
    self.notAfter = notAfter
  }

  /// True when verification found no problem.
  public var isValid: Bool { problems.isEmpty }
}

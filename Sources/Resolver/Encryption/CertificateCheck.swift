/// The verification outcome of a server certificate; informational only (OE-26).
public struct CertificateCheck: Sendable, Hashable, Codable {
  /// Empty when valid; otherwise "expired", "not-yet-valid", "self-signed", "untrusted-issuer", "wrong-name", ...
  public var problems: [String]
  public var subject: String?
  public var notAfter: String?
  public var isValid: Bool { problems.isEmpty }
  public init(problems: [String], subject: String? = nil, notAfter: String? = nil) {
    self.problems = problems
    self.subject = subject
    self.notAfter = notAfter
  }
}

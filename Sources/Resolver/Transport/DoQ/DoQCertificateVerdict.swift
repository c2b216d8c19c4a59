import CNgtcp2Shim
import Foundation

/// Maps the engine's verification bits (OpenSSL's verdict, as DoT's) to the problem names DoT
/// uses (informational, OE-26).
enum DoQCertificateVerdict {
  static func check(problems bits: UInt32, subject: String?, notAfter: Int64) -> CertificateCheck {
    let names: [(Int, String)] = [
      (Int(DOQ_CERT_EXPIRED), "expired"), (Int(DOQ_CERT_NOT_YET_VALID), "not-yet-valid"),
      (Int(DOQ_CERT_SELF_SIGNED), "self-signed"), (Int(DOQ_CERT_UNTRUSTED_ISSUER), "untrusted-issuer"),
      (Int(DOQ_CERT_WRONG_NAME), "wrong-name"), (Int(DOQ_CERT_NONE), "no-certificate"),
      (Int(DOQ_CERT_OTHER), "other:verification failed"),
    ]
    let problems = names.filter { Int(bits) & $0.0 != 0 }.map(\.1)
    return CertificateCheck(problems: problems, subject: subject, notAfter: isoDate(notAfter))
  }

  private static func isoDate(_ unix: Int64) -> String? {
    guard unix >= 0 else { return nil }
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(unix)))
  }
}

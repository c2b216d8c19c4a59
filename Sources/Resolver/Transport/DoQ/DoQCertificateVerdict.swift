import CNgtcp2Shim
import Foundation

/// Maps the engine's verification bits (OpenSSL's verdict, as DoT's) to the problem names DoT
/// uses (informational, OE-26), OpenSSL's text for "other" included.
enum DoQCertificateVerdict {
  static func check(problems bits: UInt32, subject: String?, notAfter: Int64) -> CertificateCheck {
    let names: [(Int, String)] = [
      (Int(DOQ_CERT_EXPIRED), "expired"), (Int(DOQ_CERT_NOT_YET_VALID), "not-yet-valid"),
      (Int(DOQ_CERT_SELF_SIGNED), "self-signed"), (Int(DOQ_CERT_UNTRUSTED_ISSUER), "untrusted-issuer"),
      (Int(DOQ_CERT_WRONG_NAME), "wrong-name"), (Int(DOQ_CERT_NONE), "no-certificate"),
      (Int(DOQ_CERT_OTHER), other(code: Int(bits >> UInt32(DOQ_CERT_OTHER_CODE_SHIFT)))),
    ]
    let problems = names.filter { Int(bits) & $0.0 != 0 }.map(\.1)
    return CertificateCheck(problems: problems, subject: subject, notAfter: isoDate(notAfter))
  }

  /// OpenSSL's code gets DoT's text for it; none (a chain that did not parse, a blob from before
  /// codes were kept) reads "other:verification failed".
  static func other(code: Int) -> String {
    code == 0 ? "other:verification failed" : CertificateEvaluator.problem(forVerifyResult: code)
  }

  /// As DoT writes it (`CertificateEvaluator`), without ICU (ISOTimestamp.format).
  private static func isoDate(_ unix: Int64) -> String? {
    guard unix >= 0 else { return nil }
    return ISOTimestamp.format(Double(unix))
  }
}

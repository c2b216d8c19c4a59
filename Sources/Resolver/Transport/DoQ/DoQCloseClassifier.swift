/// Classifies the server's CONNECTION_CLOSE for RFC 9539 (§6 gap 5): DOQ_NO_ERROR, DOQ_EXCESSIVE_LOAD,
/// a transport NO_ERROR and the idle timeout are clean; every other code is a failure.
enum DoQCloseClassifier {
  static func failure(for close: DoQPeerClose) -> EncryptedFailure {
    switch close {
    case .idle, .application(DoQSocketSession.ErrorCode.noError),
      .application(DoQSocketSession.ErrorCode.excessiveLoad), .transport(0):
      return .cleanClose
    case .application(let code):
      // Unknown codes count as DOQ_UNSPECIFIED_ERROR (T-31); the text keeps the number.
      return .tlsError("DoQ error 0x\(String(code, radix: 16))")
    case .transport(let code):
      return .tlsError("QUIC transport error 0x\(String(code, radix: 16))")
    }
  }
}

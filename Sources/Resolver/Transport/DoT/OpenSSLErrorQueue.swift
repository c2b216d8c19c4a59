import COpenSSL

/// Reads OpenSSL's per-thread error queue into an `EncryptedFailure`.
/// Every engine call happens on one event loop thread, so the queue belongs to the call that just failed.
enum OpenSSLErrorQueue {
  /// Empties this thread's queue before an SSL call, so that `SSL_get_error` judges the call by its
  /// own errors only. `ERR_clear_error` resets all 16 slots whatever they hold, about 390
  /// instructions, twice per DoT exchange (callgrind); the queue is nearly always empty, which
  /// `ERR_peek_error` tells for far less.
  static func clearBeforeCall() {
    if ERR_peek_error() != 0 { ERR_clear_error() }
  }

  /// Drains the queue: a received TLS alert becomes `.tlsAlert`, anything else `.tlsError` with OpenSSL's text.
  static func failure(fallback: String) -> EncryptedFailure {
    var first: UInt = 0
    var texts: [String] = []
    while case let code = ERR_get_error(), code != 0 {
      if first == 0 { first = code }
      texts.append(text(of: code))
    }
    guard first != 0 else { return .tlsError(fallback) }
    let reason = sotto_ERR_GET_REASON(first)
    let offset = sotto_SSL_AD_REASON_OFFSET()
    if reason >= offset && reason < offset + 256 {
      // SSL_R_SSLV3_ALERT_* / SSL_R_TLSV1_ALERT_* are the alert description plus 1000.
      return .tlsAlert(String(cString: SSL_alert_desc_string_long(reason - offset)))
    }
    return .tlsError(texts.joined(separator: "; "))
  }

  /// Drains the queue into a failure of this machine's own (`what` could not be made: memory),
  /// which is not held against the server.
  static func localFailure(_ what: String) -> EncryptedFailure {
    let text = drainText()
    return .local(text.isEmpty ? what : "\(what): \(text)")
  }

  /// Drains the queue and returns its text (empty if it was empty).
  static func drainText() -> String {
    var texts: [String] = []
    while case let code = ERR_get_error(), code != 0 { texts.append(text(of: code)) }
    return texts.joined(separator: "; ")
  }

  private static func text(of code: UInt) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buffer, buffer.count)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

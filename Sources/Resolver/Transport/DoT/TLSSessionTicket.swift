import COpenSSL

/// Converts between OpenSSL sessions and the opaque bytes the RFC 9539 policy stores (OE-22, OE-23).
enum TLSSessionTicket {
  /// DER-encodes a session (i2d_SSL_SESSION); nil if OpenSSL cannot encode it.
  static func serialize(_ session: OpaquePointer) -> [UInt8]? {
    let length = i2d_SSL_SESSION(session, nil)
    guard length > 0 else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(length))
    let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
      var cursor = buffer.baseAddress
      return i2d_SSL_SESSION(session, &cursor)
    }
    return written == length ? bytes : nil
  }

  /// Decodes `bytes` and attaches the session to `ssl` for resumption; false if they are not a session.
  static func attach(_ bytes: [UInt8], to ssl: OpaquePointer) -> Bool {
    guard !bytes.isEmpty else { return false }
    let session = bytes.withUnsafeBufferPointer { buffer -> OpaquePointer? in
      var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
      return d2i_SSL_SESSION(nil, &cursor, buffer.count)
    }
    guard let session else {
      ERR_clear_error()
      return false
    }
    // SSL_set_session takes its own reference.
    let ok = SSL_set_session(ssl, session) == 1
    SSL_SESSION_free(session)
    ERR_clear_error()
    return ok
  }
}

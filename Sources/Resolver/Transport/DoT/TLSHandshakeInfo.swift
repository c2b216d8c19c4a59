/// What a completed DoT handshake negotiated, for RFC 9539 state and monitoring events.
public struct TLSHandshakeInfo: Sendable, Hashable {
  /// OpenSSL's protocol name, e.g. "TLSv1.3".
  public var tlsVersion: String
  /// The ALPN protocol the server selected; nil if it selected none.
  public var alpn: String?
  /// True when the offered session ticket was accepted.
  public var resumed: Bool
  /// The certificate verification outcome (never a reason to reject, OE-26).
  public var certificate: CertificateCheck
  /// Milliseconds from the start of the TCP connect to the end of the handshake.
  public var handshakeMs: Double
  /// For transports with 0-RTT (DoQ): whether early data was sent and accepted; nil when none was sent.
  public var earlyDataAccepted: Bool?

  public init(
    tlsVersion: String, alpn: String?, resumed: Bool, certificate: CertificateCheck, handshakeMs: Double,
    earlyDataAccepted: Bool? = nil
  ) {
    self.earlyDataAccepted = earlyDataAccepted
    self.tlsVersion = tlsVersion
    self.alpn = alpn
    self.resumed = resumed
    self.certificate = certificate
    self.handshakeMs = handshakeMs
  }
}

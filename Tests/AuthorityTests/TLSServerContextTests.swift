import Authority
import Resolver
import Testing

/// The DoT listener's certificate loading (`--tls-certificate`, `--tls-key`) and its SPKI pin.
@Suite struct TLSServerContextTests {
  @Test func aCertificateWithItsChainLoadsAndItsPinFollowsTheKey() throws {
    let ca = try CertificateFactory()
    let one = try ca.issue(name: "a.test", ip: "127.0.0.1")
    let two = try ca.issue(name: "b.test", ip: "127.0.0.1")
    let first = try TLSServerContext(certificatePEM: one.certificatePEM + ca.caPEM, privateKeyPEM: one.privateKeyPEM)
    let again = try TLSServerContext(certificatePEM: one.certificatePEM, privateKeyPEM: one.privateKeyPEM)
    let other = try TLSServerContext(certificatePEM: two.certificatePEM, privateKeyPEM: two.privateKeyPEM)
    #expect(first.spkiPin.count == 44 && first.spkiPin.hasSuffix("="))  // base64 of 32 octets
    #expect(first.spkiPin == again.spkiPin)
    #expect(first.spkiPin != other.spkiPin)
  }

  @Test func wrongMaterialIsASpecificError() throws {
    let ca = try CertificateFactory()
    let one = try ca.issue(name: "a.test", ip: "127.0.0.1")
    let two = try ca.issue(name: "b.test", ip: "127.0.0.1")
    #expect(
      message { try TLSServerContext(certificatePEM: "junk", privateKeyPEM: one.privateKeyPEM) }
        == "no PEM certificate found")
    #expect(
      message { try TLSServerContext(certificatePEM: one.certificatePEM, privateKeyPEM: "junk") }
        == "no PEM private key found")
    #expect(
      message { try TLSServerContext(certificatePEM: one.certificatePEM, privateKeyPEM: two.privateKeyPEM) }
        == "the private key does not match the certificate")
    #expect(
      message { try TLSServerContext(certificateFile: "/nonexistent/cert.pem", keyFile: "/nonexistent/key.pem") }
        == "cannot read certificate file /nonexistent/cert.pem")
  }

  private func message(_ body: () throws -> TLSServerContext) -> String? {
    do {
      _ = try body()
      return nil
    } catch {
      return (error as? TLSServerError)?.message ?? "\(error)"
    }
  }
}

import NIOCore

/// What one demo server does on port 853, TCP (DoT) and UDP (DoQ).
public enum Port853: Sendable, Equatable {
  /// Nothing listens: TCP is reset, UDP gets ICMP port unreachable.
  case refused
  /// Accepts and never answers (TCP) / swallows datagrams (UDP): handshakes time out.
  case silent
  /// Serves DNS with a valid certificate from the demo CA.
  case valid
  /// Serves DNS with an expired certificate.
  case expired
  /// Serves DNS, but closes each session after a few queries (and DoQ resets some streams).
  case flaky
}

/// One authoritative server of the demo hierarchy.
public struct DemoServer: Sendable {
  public var name: String
  public var address: String
  /// The zone it serves (origin with trailing dot).
  public var zone: String
  public var dot: Port853
  public var doq: Port853
  /// Every Do53 answer is held back this long (a slow server).
  public var delay: TimeAmount?
  /// One line for the demo's banner and README.
  public var role: String
}

extension DemoServer {
  /// The demo hierarchy: a root, two TLDs and a dozen zones, one case of the dashboard each.
  public static let all: [DemoServer] = [
    .init(name: "root", address: "127.77.0.1", zone: ".", dot: .refused, doq: .refused, role: "root, Do53 only"),
    .init(name: "tld-test", address: "127.77.1.1", zone: "test.", dot: .valid, doq: .refused, role: "TLD test., DoT"),
    .init(name: "tld-demo", address: "127.77.1.2", zone: "demo.", dot: .refused, doq: .valid, role: "TLD demo., DoQ"),
    .init(
      name: "plain", address: "127.77.2.1", zone: "plain.demo.", dot: .refused, doq: .refused,
      role: "Do53 only (853 refused)"),
    .init(name: "dot", address: "127.77.3.1", zone: "dot.test.", dot: .valid, doq: .refused, role: "DoT"),
    .init(name: "doq", address: "127.77.4.1", zone: "doq.test.", dot: .refused, doq: .valid, role: "DoQ"),
    .init(name: "both", address: "127.77.5.1", zone: "both.test.", dot: .valid, doq: .valid, role: "DoT and DoQ"),
    .init(
      name: "silent", address: "127.77.6.1", zone: "silent.test.", dot: .silent, doq: .silent,
      role: "853 silent (handshakes time out)"),
    .init(
      name: "expired", address: "127.77.7.1", zone: "expired.test.", dot: .expired, doq: .expired,
      role: "DoT and DoQ, expired certificate"),
    .init(
      name: "flaky", address: "127.77.8.1", zone: "flaky.test.", dot: .flaky, doq: .flaky,
      role: "DoT and DoQ, sessions break now and then"),
    .init(
      name: "slow", address: "127.77.9.1", zone: "slow.demo.", dot: .refused, doq: .refused, delay: .milliseconds(150),
      role: "Do53 only, answers after 150 ms"),
    .init(
      name: "mixed-dot", address: "127.77.10.1", zone: "mixed.test.", dot: .valid, doq: .refused,
      role: "mixed.test. ns1, DoT"),
    .init(
      name: "mixed-plain", address: "127.77.10.2", zone: "mixed.test.", dot: .refused, doq: .refused,
      role: "mixed.test. ns2, Do53 only"),
    .init(name: "shop", address: "127.77.11.1", zone: "shop.demo.", dot: .refused, doq: .valid, role: "DoQ"),
    .init(name: "news", address: "127.77.12.1", zone: "news.test.", dot: .valid, doq: .valid, role: "DoT and DoQ"),
    .init(
      name: "mail", address: "127.77.13.1", zone: "mail.demo.", dot: .silent, doq: .refused,
      role: "DoT silent, DoQ refused"),
  ]

  /// The NS host name of this server (ns1.<zone>, or <name>.root-servers.demo. for the root).
  public var nsName: String {
    if zone == "." { return "a.root-servers.demo." }
    if name == "mixed-plain" { return "ns2.\(zone)" }
    return "ns1.\(zone)"
  }
}

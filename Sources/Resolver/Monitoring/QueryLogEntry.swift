/// One hop of a client query as the monitor keeps it: which zone's server was asked, over what.
public struct HopSummary: Sendable, Codable, Hashable {
  public var zone: String
  public var server: String
  public var transport: TransportKind
  public var outcome: String

  public init(zone: String, server: String, transport: TransportKind, outcome: String) {
    self.zone = zone
    self.server = server
    self.transport = transport
    self.outcome = outcome
  }

  /// True when this hop crossed the wire in cleartext.
  public var isCleartext: Bool { transport.isCleartext }
}

/// One client query in the monitor's ring buffer.
public struct QueryLogEntry: Sendable, Codable, Hashable {
  /// Unix seconds when the answer went out.
  public var time: Double
  public var client: String
  public var name: String
  public var type: String
  public var rcode: String
  public var latencyMs: Double
  public var cacheHit: Bool
  /// Answered with expired data: no fresh answer in time (serve-stale, RFC 8767).
  public var stale: Bool
  public var hops: [HopSummary]

  public init(
    time: Double, client: String, name: String, type: String, rcode: String, latencyMs: Double, cacheHit: Bool,
    stale: Bool = false, hops: [HopSummary]
  ) {
    self.time = time
    self.client = client
    self.name = name
    self.type = type
    self.rcode = rcode
    self.latencyMs = latencyMs
    self.cacheHit = cacheHit
    self.stale = stale
    self.hops = hops
  }

  /// Number of hops that went in cleartext.
  public var cleartextHops: Int { hops.filter(\.isCleartext).count }
}

/// A name that went to a server in cleartext (the Privacy panel's recent list).
public struct CleartextLeak: Sendable, Codable, Hashable {
  public var time: Double
  public var name: String
  public var zone: String
  public var server: String
  public var transport: TransportKind
}

extension Hop {
  /// The monitor's short form of this hop.
  public var summary: HopSummary { HopSummary(zone: zone, server: server, transport: transport, outcome: outcome) }
}

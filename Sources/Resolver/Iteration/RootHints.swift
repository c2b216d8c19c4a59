/// Root server hints: the IANA root servers built in, or a `named.root` file.
public struct RootHints: Sendable {
  /// The `. NS` names with their addresses.
  public var servers: [(name: DNSName, addresses: [String])]

  /// Builds hints from records of a root hints zone: `.` NS records plus A/AAAA glue.
  public init(records: [ResourceRecord]) throws(RootHintsError) {
    let nsNames = records.compactMap { rr -> DNSName? in
      if rr.name.isRoot, rr.type == .ns, case .ns(let n) = rr.rdata { return n }
      return nil
    }
    guard !nsNames.isEmpty else { throw .noNSRecords }
    var result: [(DNSName, [String])] = []
    for ns in nsNames {
      let addrs = records.compactMap { rr -> String? in
        guard rr.name == ns else { return nil }
        switch rr.rdata {
        case .a(let a): return a.description
        case .aaaa(let a): return a.description
        default: return nil
        }
      }
      if !addrs.isEmpty { result.append((ns, addrs)) }
    }
    guard !result.isEmpty else { throw .noAddresses }
    servers = result
  }

  /// Reads a root hints file in zone-file (`named.root`) format.
  public init(fileText: String) throws(RootHintsError) {
    let records: [ResourceRecord]
    do {
      records = try ZoneFile.parse(fileText, origin: .root)
    } catch {
      throw .syntax(error)
    }
    try self.init(records: records)
  }

  /// The IANA root servers (root hints file of 2023/2024, with b.root's renumbered addresses).
  public static let iana: RootHints = {
    let table: [(String, String, String)] = [
      ("a", "198.41.0.4", "2001:503:ba3e::2:30"), ("b", "170.247.170.2", "2801:1b8:10::b"),
      ("c", "192.33.4.12", "2001:500:2::c"), ("d", "199.7.91.13", "2001:500:2d::d"),
      ("e", "192.203.230.10", "2001:500:a8::e"), ("f", "192.5.5.241", "2001:500:2f::f"),
      ("g", "192.112.36.4", "2001:500:12::d0d"), ("h", "198.97.190.53", "2001:500:1::53"),
      ("i", "192.36.148.17", "2001:7fe::53"), ("j", "192.58.128.30", "2001:503:c27::2:30"),
      ("k", "193.0.14.129", "2001:7fd::1"), ("l", "199.7.83.42", "2001:500:9f::42"),
      ("m", "202.12.27.33", "2001:dc3::35"),
    ]
    var hints = RootHints(unchecked: [])
    for (letter, v4, v6) in table {
      let name = DNSName(uncheckedLabels: [Array(letter.utf8), Array("root-servers".utf8), Array("net".utf8)])
      hints.servers.append((name, [v4, v6]))
    }
    return hints
  }()

  init(unchecked servers: [(name: DNSName, addresses: [String])]) { self.servers = servers }
}

/// Why a root hints file was rejected.
public enum RootHintsError: Error, CustomStringConvertible {
  case syntax(WireError)
  case noNSRecords
  case noAddresses

  public var description: String {
    switch self {
    case .syntax(let e): "root hints: cannot parse: \(e)"
    case .noNSRecords: "root hints: no NS records for the root zone '.'"
    case .noAddresses: "root hints: no A/AAAA addresses for any root NS name"
    }
  }
}

/// A set of records with the same owner, type and class.
public struct RRset: Sendable, Hashable {
  public var name: DNSName
  public var type: RRType
  public var rrclass: RRClass
  public var ttl: UInt32
  public var rdatas: [RData]

  public init(name: DNSName, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdatas: [RData]) {
    self.name = name
    self.type = type
    self.rrclass = rrclass
    self.ttl = ttl
    self.rdatas = rdatas
  }

  /// The set as individual records (all with the set's TTL).
  public var records: [ResourceRecord] {
    rdatas.map { ResourceRecord(name: name, type: type, rrclass: rrclass, ttl: ttl, rdata: $0) }
  }

  /// Groups records into sets by (name, type, class) in order of first appearance; the set's TTL
  /// is the smallest of the group and duplicate RDATA is kept once (RFC 2181 §5).
  /// The owner name keeps the case of the group's first record.
  public static func group(_ records: [ResourceRecord]) -> [RRset] {
    var sets: [RRset] = []
    var position: [CacheKey: Int] = [:]
    for record in records {
      let key = CacheKey(name: record.name, type: record.type, rrclass: record.rrclass)
      if let i = position[key] {
        sets[i].ttl = min(sets[i].ttl, record.ttl)
        if !sets[i].rdatas.contains(record.rdata) { sets[i].rdatas.append(record.rdata) }
      } else {
        position[key] = sets.count
        sets.append(
          RRset(name: record.name, type: record.type, rrclass: record.rrclass, ttl: record.ttl, rdatas: [record.rdata]))
      }
    }
    return sets
  }

  /// `records` as a client should see them (RFC 2181 §5.2, §5): every record of an RRset with the
  /// set's lowest TTL, duplicates dropped, sets in the order they came. `records` itself when it
  /// already is so (one record, or equal TTLs and no duplicate: the usual answer).
  public static func uniform(_ records: [ResourceRecord]) -> [ResourceRecord] {
    guard records.count > 1 else { return records }
    let ttl = records[0].ttl
    var plain = records.allSatisfy { $0.ttl == ttl }
    if plain {
      outer: for i in records.indices.dropFirst() {
        for j in records.indices[..<i] where records[j] == records[i] {
          plain = false
          break outer
        }
      }
    }
    return plain ? records : group(records).flatMap(\.records)
  }
}

import Synchronization

@testable import Resolver

/// A clock the test moves by hand.
final class FakeTimeSource: TimeSource {
  private let seconds: Mutex<Double>
  init(_ start: Double = 1_000) { seconds = Mutex(start) }
  func now() -> Double { seconds.withLock { $0 } }
  func advance(_ delta: Double) { seconds.withLock { $0 += delta } }
}

enum CacheFixtures {
  static func name(_ text: String) -> DNSName {
    do { return try DNSName(text) } catch { preconditionFailure("bad test name \(text)") }
  }

  static func aSet(_ owner: String, ttl: UInt32, _ last: UInt8 = 1) -> RRset {
    let address = IPv4Address(octets: [192, 0, 2, last]) ?? IPv4Address(octets: [0, 0, 0, 0])
    return RRset(name: name(owner), type: .a, ttl: ttl, rdatas: address.map { [.a($0)] } ?? [])
  }

  static func soa(_ zone: String, ttl: UInt32, minimum: UInt32) -> ResourceRecord {
    ResourceRecord(
      name: name(zone), type: .soa, ttl: ttl,
      rdata: .soa(
        mname: name("ns1.\(zone)"), rname: name("hostmaster.\(zone)"), serial: 1, refresh: 7200, retry: 900,
        expire: 1_209_600, minimum: minimum))
  }

  static func cache(
    _ time: FakeTimeSource, maxEntries: Int = 100, minTTL: UInt32 = 0, maxTTL: UInt32 = 86_400,
    maxNegativeTTL: UInt32 = 3_600, maxStale: UInt32 = 0
  ) -> DNSCache {
    var config = CacheConfiguration()
    config.maxEntries = maxEntries
    config.minTTL = minTTL
    config.maxTTL = maxTTL
    config.maxNegativeTTL = maxNegativeTTL
    config.maxStale = maxStale  // serve-stale off: expired entries go when met (ServeStaleTests keep them)
    return DNSCache(configuration: config, time: time)
  }
}

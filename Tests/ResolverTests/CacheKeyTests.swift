import Testing

@testable import Resolver

/// Cache keys hold short owners inline and long ones in an array: lookups must not care which.
@Suite struct CacheKeyTests {
  typealias F = CacheFixtures
  /// 33 octets of wire form: one past what a key holds inline.
  static let long = "a-name-of-twenty-six-octet.test."
  static let short = "www.example.test."

  @Test func keysIgnoreCaseAndTellTypesAndLengthsApart() {
    for text in [Self.short, Self.long] {
      let lower = CacheKey(name: F.name(text), type: .a, rrclass: .in)
      let upper = CacheKey(name: F.name(text.uppercased()), type: .a, rrclass: .in)
      #expect(lower == upper)
      #expect(lower.hashValue == upper.hashValue)
      #expect(lower != CacheKey(name: F.name(text), type: .aaaa, rrclass: .in))
      #expect(lower != CacheKey(name: F.name(text), type: nil, rrclass: .in))
      #expect(lower.owner == F.name(text).lowercasedWire)
      #expect(lower.name == F.name(text))
      #expect(CacheKey(owner: lower.owner, type: .a, rrclass: .in) == lower)
    }
    #expect(F.name(Self.long).wireLength == CacheKey.inlineCapacity + 1)
    // Same leading octets, one label more: different keys.
    #expect(
      CacheKey(name: F.name("a.b.test."), type: .a, rrclass: .in)
        != CacheKey(name: F.name("a.b.test.x."), type: .a, rrclass: .in))
  }

  /// Inline owners are hashed by the words their length covers, with length, type and class:
  /// a key is found under any spelling, at every length up to the inline limit and past it.
  @Test func everyOwnerLengthFindsItsEntryUnderAnySpelling() throws {
    var table: [CacheKey: Int] = [:]
    var names: [String] = []
    for length in 1...40 {
      let label = String((0..<length).map { Character(UnicodeScalar(UInt8(65 + $0 % 26))) })
      names.append(label + ".")
      table[CacheKey(name: F.name(label + "."), type: .a, rrclass: .in)] = length
      table[CacheKey(name: F.name(label + "."), type: nil, rrclass: .in)] = -length
    }
    #expect(table.count == 80)
    for (i, text) in names.enumerated() {
      #expect(table[CacheKey(name: F.name(text.lowercased()), type: .a, rrclass: .in)] == i + 1)
      #expect(table[CacheKey(name: F.name(text.lowercased()), type: nil, rrclass: .in)] == -(i + 1))
      #expect(table[CacheKey(name: F.name(text.lowercased()), type: .aaaa, rrclass: .in)] == nil)
    }
  }

  @Test func parentsRunUpToTheRoot() {
    var key: CacheKey? = CacheKey(name: F.name("x." + Self.long), type: nil, rrclass: .in)
    var names: [String] = []
    while let k = key {
      names.append(k.name.description)
      key = k.parentForAnyType
    }
    #expect(names == ["x." + Self.long, Self.long, "test.", "."])
  }

  @Test func longAndShortOwnersAreCachedAndFoundAlike() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    for text in [Self.short, Self.long, "x." + Self.long] {
      cache.insert(F.aSet(text.uppercased(), ttl: 300), rank: .authAnswer)
      let found = cache.lookup(F.name(text), .a)
      #expect(found?.rrset.name.description == text.uppercased())  // the case it was stored with
      #expect(found?.rrset.rdatas.count == 1)
    }
    // An NXDOMAIN for the long name covers the names below it, found through a short key's parent chain.
    cache.insertNegative(name: F.name(Self.long), type: nil, soa: F.soa("test", ttl: 600, minimum: 600))
    #expect(cache.lookupNegative(F.name("deep.below." + Self.long), .a)?.nxdomain == true)
    #expect(cache.lookupNegative(F.name("other.test."), .a) == nil)
  }
}

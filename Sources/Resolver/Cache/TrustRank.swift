/// Trust ranking of cached data (RFC 2181 §5.4.1, R-8): higher wins, lower never overwrites higher.
public enum TrustRank: Int, Sendable, Comparable {
  case glue = 0
  case referralNS = 1
  case additional = 2
  case nonAuthAnswer = 3
  case authAuthority = 4
  case authAnswer = 5
  public static func < (a: TrustRank, b: TrustRank) -> Bool { a.rawValue < b.rawValue }
}

extension KeyedDecodingContainer {
  /// A counter of a snapshot, 0 when absent: a `ctl` or dashboard talking to a `sotto` of another
  /// version still decodes its statistics.
  func counter(_ key: Key) throws -> Int { try decodeIfPresent(Int.self, forKey: key) ?? 0 }
}

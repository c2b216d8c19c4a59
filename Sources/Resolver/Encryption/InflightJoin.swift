/// Identical upstream queries in flight under the encryption policy, like `InflightExchanges`
/// but without a task per exchange: the first caller runs the exchange itself and hands its result
/// to callers that arrived meanwhile. Only a joining caller suspends.
final class InflightJoin: Sendable {
  typealias Key = InflightExchanges.Key
  private let waiters = StateLock<[Key: [CheckedContinuation<ExchangeResult?, Never>]]>([:])
  /// Exchanges that joined one already in flight instead of sending.
  let joined = Counter()

  /// The result of the exchange in flight for `key`, or of `body` run now by this caller.
  func join(_ key: Key, _ body: () async -> ExchangeResult) async -> ExchangeResult {
    let owner = waiters.withLock { w -> Bool in
      guard w[key] == nil else { return false }
      w[key] = []
      return true
    }
    if !owner {
      // Nil: the exchange ended before this caller could wait for it; it runs its own.
      let shared: ExchangeResult? = await withCheckedContinuation { c in
        let waiting = waiters.withLock { w -> Bool in
          guard w[key] != nil else { return false }
          w[key]?.append(c)
          return true
        }
        if !waiting { c.resume(returning: nil) }
      }
      if let shared {
        joined.increment()
        return shared
      }
      return await join(key, body)
    }
    let result = await body()
    let queued = waiters.withLock { $0.removeValue(forKey: key) } ?? []
    for c in queued { c.resume(returning: result) }
    return result
  }
}

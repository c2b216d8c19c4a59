import Foundation
import Logging

/// Keeps the RFC 9539 table on disk: loads it at start, saves it periodically and at shutdown,
/// pruning servers unused for longer than both persistence and damping.
public final class EncryptionStore: Sendable {
  public let path: String
  let logger: Logger

  public init(path: String, logger: Logger) {
    self.path = path
    self.logger = logger
  }

  /// Loads saved records; a corrupt file is reported (warning), moved aside, and empty state used.
  public func load() -> [ServerRecord] {
    do {
      guard let doc = try StateFile.load(path: path) else { return [] }
      return StateFile.records(doc)
    } catch {
      logger.warning("\(error)")
      return []
    }
  }

  /// Saves the policy's table now.
  public func save(_ policy: EncryptionPolicy) {
    var table = policy.table
    let now = Date().timeIntervalSince1970
    table.prune(now: now)
    do {
      try StateFile.save(StateFile.document(table, now: now), path: path)
    } catch {
      logger.error("\(error)")
    }
  }

  /// Saves every `interval` seconds until cancelled.
  public func savePeriodically(_ policy: EncryptionPolicy, every interval: Double) -> Task<Void, Never> {
    Task {
      while !Task.isCancelled {
        try? await Task.sleep(for: .seconds(interval))
        if Task.isCancelled { break }
        save(policy)
      }
    }
  }
}

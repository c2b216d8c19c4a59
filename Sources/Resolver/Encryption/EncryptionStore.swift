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
  /// Resumption tickets saved on another `network` (a `LocalAddressWatch.fingerprint()`), or
  /// before the network was recorded, are dropped (T-6): one would link the two networks.
  public func load(network: String?) -> [ServerRecord] {
    do {
      guard let doc = try StateFile.load(path: path) else { return [] }
      var records = StateFile.records(doc)
      // Kept only on the network they were saved on; a file without a network (no address then,
      // or an older Sotto) keeps them only while there is still none.
      guard doc.network != network else { return records }
      var dropped = 0
      for i in records.indices { dropped += records[i].dropResumptions() }
      if dropped > 0 {
        logger.info(
          "state file \(path): \(dropped) resumption ticket(s) saved on another network dropped (T-6)")
      }
      return records
    } catch {
      logger.warning("\(error)")
      return []
    }
  }

  /// Saves the policy's table now, with the network its tickets are from.
  public func save(_ policy: EncryptionPolicy) {
    var (table, network) = policy.tableForSaving()
    let now = Date().timeIntervalSince1970
    table.prune(now: now)
    var doc = StateFile.document(table, now: now)
    doc.network = network
    do {
      try StateFile.save(doc, path: path)
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

import Logging
import NIOCore

/// The resolver with everything it runs on: Do53, the RFC 9539 policy with its DoT connector, and
/// the state file. `sotto lookup`, `sotto serve` and the dashboard all build one of these.
public final class ResolverStack: Sendable {
  public let resolver: RecursiveResolver
  /// The encryption policy, nil with encryption off.
  public let policy: EncryptionPolicy?
  public let store: EncryptionStore?
  let periodicSave: Task<Void, Never>?

  /// Builds the stack; loads `stateFile` if given (a corrupt file is reported and moved aside).
  public init(
    configuration: ResolverConfiguration, stateFile: String?, saveInterval: Double = 60, group: any EventLoopGroup,
    logger: Logger
  ) throws {
    let time = SystemTimeSource()
    let do53 = Do53Exchanger(transport: Do53Transport(group: group), time: time)
    let store = stateFile.map { EncryptionStore(path: $0, logger: logger) }
    var exchanger: any UpstreamExchanger = Do53Exchanger(
      transport: do53.transport, time: time, reason: "Do53: encryption off")
    var policy: EncryptionPolicy?
    if configuration.encryption.enabled {
      let context = try DoTClientContext(extraCAFile: configuration.encryption.extraCAFile)
      let p = EncryptionPolicy(
        settings: configuration.encryption, do53: do53, connectors: [DoTConnector(context: context, group: group)],
        saved: store?.load() ?? [], time: time, logger: logger)
      policy = p
      exchanger = p
    }
    self.policy = policy
    self.store = store
    self.resolver = RecursiveResolver(configuration: configuration, exchanger: exchanger, time: time, logger: logger)
    if let store, let policy, saveInterval > 0 {
      periodicSave = store.savePeriodically(policy, every: saveInterval)
    } else {
      periodicSave = nil
    }
  }

  /// Waits up to `probeWait` seconds for probes in flight, closes sessions cleanly and saves state.
  public func shutdown(probeWait: Double) async {
    periodicSave?.cancel()
    guard let policy else { return }
    if probeWait > 0 { await policy.waitForProbes(upTo: probeWait) }
    policy.closeAll()
    store?.save(policy)
  }
}

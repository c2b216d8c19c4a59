import Logging
import NIOCore

/// Transport-independent handling of one client message: access control, parsing, the
/// acceptance rules, resolution and serialization. Shared by the UDP and TCP handlers.
struct QueryProcessor: Sendable {
  let resolver: any QueryResolving
  /// `resolver` when it is Sotto's own, called directly to save a hop (as `ResolverCore.plainExchanger`).
  private let recursive: RecursiveResolver?
  let allowed: [CIDR]
  let counters: ListenerCounters
  let logger: Logger
  var monitor: ResolverMonitor? = nil
  /// Client resolutions running at once at most (excess: SERVFAIL, counted).
  var maxResolutions = Int.max
  /// Queries waiting on an identical question's running resolution at most, without a slot: 8
  /// per slot (each holds its client's state until that resolution ends).
  var maxJoiners: Int { maxResolutions > Int.max / 8 ? Int.max : maxResolutions * 8 }
  /// Per-client query rate limit (`ClientKey`); nil when off.
  var rateLimiter: ClientRateLimiter? = nil

  /// A processor answering from `resolver` the clients in `allowed`, counting in `counters`.
  init(
    resolver: any QueryResolving, allowed: [CIDR], counters: ListenerCounters, logger: Logger,
    monitor: ResolverMonitor? = nil
  ) {
    self.resolver = resolver
    self.recursive = resolver as? RecursiveResolver
    self.allowed = allowed
    self.counters = counters
    self.logger = logger
    self.monitor = monitor
  }

  /// Whether a message from `client` may be processed at all (the per-client rate limit);
  /// counts a refusal as a drop. Called before any work is spent on the message.
  func admit(_ client: SocketAddress?) -> Bool {
    admit(client.map(RawClientAddress.init))
  }

  /// UDP source ports of services that answer whatever they get (echo 7, daytime 13, chargen 19,
  /// time 37) and port 0: a query "from" one of them is spoofed to start a packet loop (chargen's
  /// text parses as a query header; each FORMERR draws more), so it is dropped unanswered, as
  /// BIND does.
  static func isReflectorPort(_ port: UInt16?) -> Bool {
    switch port {
    case 0, 7, 13, 19, 37: true
    default: false
    }
  }

  /// A UDP datagram from `isReflectorPort`: counted as dropped.
  func dropFromReflectorPort() {
    counters.update {
      $0.queries += 1
      $0.dropped += 1
    }
  }

  /// `admit` for an address kept raw (the UDP socket loop).
  func admit(_ client: RawClientAddress?) -> Bool {
    guard let rateLimiter else { return true }
    guard rateLimiter.allow(ClientKey(client, ipv6Prefix: rateLimiter.ipv6Prefix)) else {
      counters.update {
        $0.queries += 1
        $0.rateLimited += 1
      }
      return false
    }
    return true
  }

  /// Processes `raw` from `client` and calls `reply` exactly once, with the response bytes as soon as
  /// they are serialized (nil: send nothing) and whether the packet cache may replay them (not a
  /// stale answer: fresh data may arrive any moment). The monitor's log entry is written after
  /// `reply` returns, so the client does not wait for it.
  nonisolated(nonsending) func process(
    _ raw: [UInt8], from client: SocketAddress?, via transport: ClientTransport,
    reply: (_ response: [UInt8]?, _ replayable: Bool) -> Void
  ) async {
    await process(raw, from: client.map(RawClientAddress.init), via: transport, reply: reply)
  }

  /// `process` for an address kept raw: the UDP socket loop's full path makes no `SocketAddress`.
  nonisolated(nonsending) func process(
    _ raw: [UInt8], from client: RawClientAddress?, via transport: ClientTransport,
    reply: (_ response: [UInt8]?, _ replayable: Bool) -> Void
  ) async {
    var resolved: (Question, Resolution)?
    let response = await respond(to: raw, from: client, via: transport, resolved: &resolved)
    reply(response, resolved.map { !$0.1.stale } ?? true)
    if let monitor, let (question, resolution) = resolved {
      // On the engine thread, once this turn's answers are out.
      UDPExchangeEngine.shared.afterSends {
        monitor.record(rawClient: client, question: question, resolution: resolution)
      }
    }
  }

  /// The response bytes for `raw`; a resolution it ran is left in `resolved` for the monitor.
  private nonisolated(nonsending) func respond(
    to raw: [UInt8], from client: RawClientAddress?, via transport: ClientTransport,
    resolved: inout (Question, Resolution)?
  ) async -> [UInt8]? {
    counters.countQuery(via: transport)
    let isAllowed = client.map { address in allowed.contains { $0.contains(address) } } ?? false
    var query = Message()
    do {
      try Message.parse(raw, into: &query)
    } catch {
      guard isAllowed, let formErr = ResponseBuilder.formErr(forUnparsable: raw) else {
        counters.update { $0.dropped += 1 }
        return nil
      }
      logger.debug("unparsable query", metadata: ["client": "\(client?.description ?? "?")", "error": "\(error)"])
      counters.update { $0.formErrors += 1 }
      return ResponseBuilder.serialize(formErr, for: nil, via: transport)
    }
    guard isAllowed else {
      if query.header.qr {
        counters.update { $0.dropped += 1 }
        return nil
      }
      logger.debug("refused client outside allowed networks", metadata: ["client": "\(client?.description ?? "?")"])
      counters.update {
        $0.refused += 1
        $0.notAllowed += 1
      }
      // RA=0: recursion is not available to this client.
      var refusal = ResponseBuilder.error(.refused, to: query)
      refusal.header.ra = false
      return ResponseBuilder.serialize(refusal, for: query, via: transport)
    }
    // Built in place by the branch taken (`ResponseBuilder.write`), not copied out of a result.
    var response = Message()
    switch ResponseBuilder.verdict(for: query) {
    case .drop:
      counters.update { $0.dropped += 1 }
      return nil
    case .respond(let message):
      response = message
    case .resolve(let question):
      // Refreshes that go on after a stale answer hold upstream resources too (R-43), but never
      // more than half the cap: clients keep the other half during an outage.
      let background = min(resolver.backgroundResolutions, maxResolutions / 2)
      // A question already being resolved joins that resolution and starts no upstream work: it
      // takes no slot (a burst of one uncached name is not shed), up to `maxJoiners`.
      let joins = resolver.isResolving(question) && counters.beginJoin(limit: maxJoiners)
      if !joins {
        guard counters.beginResolution(limit: maxResolutions - background) else {
          logger.debug("resolution cap reached", metadata: ["client": "\(client?.description ?? "?")"])
          ResponseBuilder.writeError(.servFail, to: query, into: &response)
          break
        }
      }
      let resolution: Resolution
      if let recursive {
        resolution = await recursive.resolve(question)
      } else {
        resolution = await resolver.resolve(question)
      }
      if joins { counters.endJoin() } else { counters.endResolution() }
      resolved = (question, resolution)
      ResponseBuilder.write(resolution, to: query, into: &response)
      if query.questions.first?.type == .any { counters.update { $0.anyQueries += 1 } }
    }
    count(response.rcode)
    return ResponseBuilder.serialize(response, for: query, via: transport)
  }

  private func count(_ rcode: RCode) {
    if rcode == .refused { counters.update { $0.refused += 1 } }
    if rcode == .formErr { counters.update { $0.formErrors += 1 } }
  }
}

import NIOCore

extension ResolutionRun {
  /// Sends a held server's due probe beside the resolution instead of in its way: the
  /// zone's live servers answer as usual, and a reply to the probe ends the hold for the
  /// resolutions after it, so a server that came back is used (and shown) again without waiting
  /// for its zone's other servers to fail. The probe's outcome is recorded as any query's; it
  /// adds no hop to the resolution and nothing to the cache.
  func probeInBackground(_ server: Candidate, zone: DNSName, qname: DNSName, qtype: RRType) {
    let core = self.core
    let query = makeQuery(qname: qname, qtype: qtype)
    let ip = server.endpoint.ip
    let timeout = TimeAmount.milliseconds(Int64(core.selection.timeoutMs(server: ip)))
    let context = ExchangeContext(nsName: server.nsName, zone: zone, budget: limits.deadline)
    let kind = ServerHealth.Kind(qtype)
    core.selection.noteProbe()
    Task(executorPreference: UDPExchangeEngine.shared.taskExecutor) {
      let sentAt = core.time.now()
      let result = await core.exchanger.exchange(query, server: server.endpoint, context: context, timeout: timeout)
      if result.response != nil {
        let measured = result.legs.last.flatMap { $0.transport == .do53TCP ? nil : $0.rttMs }
        let ended =
          measured.map { core.selection.record(server: ip, rttMs: $0, kind: kind) }
          ?? core.selection.recordReply(server: ip, kind: kind)
        if ended { core.logger.notice("server \(ip) (\(zone)) answers again; no longer held") }
      } else if let last = result.legs.last, last.error == .timeout, !last.cutShort, !result.joined {
        core.selection.recordTimeout(server: ip, sentAt: sentAt, kind: kind, silence: last.transport.isCleartext)
      }
    }
  }
}

import NIOCore

extension ResolutionRun {
  /// Sends a held server's due probe (`held`, R-24) or a slower server's re-test beside
  /// the resolution instead of in its way: the zone's live servers answer as usual, and a reply
  /// to a probe ends the hold for the resolutions after it, so a server that came back is used
  /// (and shown) again without waiting for its zone's other servers to fail. The outcome is
  /// recorded as any query's and the hops go to the monitor (`ResolverCore.backgroundHops`: a
  /// probe shows its name like any query); nothing is cached. The task's value: whether the
  /// server answered NOERROR or NXDOMAIN (the resolution awaits a held server's probe only when
  /// the live servers all failed).
  func probeInBackground(_ server: Candidate, zone: DNSName, qname: DNSName, qtype: RRType, held: Bool)
    -> Task<Bool, Never>
  {
    let core = self.core
    let ip = server.endpoint.ip
    var query = makeQuery(qname: qname, qtype: qtype)
    if core.ednsFallback.isPlain(ip) { query.edns = nil }  // T-46, as `ask` sends it
    let timeout = TimeAmount.milliseconds(Int64(core.selection.timeoutMs(server: ip)))
    // A held server's probe may be awaited by this resolution: it ends with the deadline. Nothing
    // waits for a re-test: it gets its whole timeout, so it learns something.
    let remaining = max(0.05, limits.deadline - (core.time.now() - started))
    let context = ExchangeContext(nsName: server.nsName, zone: zone, budget: held ? remaining : nil)
    let question = Question(name: qname, type: qtype)
    let kind = ServerHealth.Kind(qtype)
    if held { core.selection.noteProbe() }
    return Task(executorPreference: UDPExchangeEngine.shared.taskExecutor) {
      let sentAt = core.time.now()
      let result = await core.exchanger.exchange(query, server: server.endpoint, context: context, timeout: timeout)
      // The hops first: the Privacy figures have the query once its outcome shows anywhere.
      var hops: [Hop] = []
      for leg in result.legs { hops.append(leg, server: server, zone: zone, question: question) }
      core.backgroundHops.report(hops)
      if !result.joined {
        // As in `ask`: a reply that is no answer (REFUSED, SERVFAIL, lame) shows the server
        // alive but is no measure of a useful one; measured, it ended the server's backoff, and
        // the next resolution asked the lame server first again.
        let noAnswer = result.response.map { response -> Bool in
          let verdict = ReplyClassifier.classify(
            response, zone: zone, qname: qname, qtype: qtype, relaxedGlue: core.configuration.relaxedGlue)
          if case .serverFailure = verdict { return true }
          return false
        }
        for (i, leg) in result.legs.enumerated() {
          if noAnswer == true, i == result.legs.count - 1 {
            if core.selection.penalise(server: ip, replied: kind) {
              core.logger.notice("server \(ip) (\(zone)) answers again; no longer held")
            }
          } else {
            core.noteLeg(leg, server: ip, zone: zone, kind: kind)
          }
        }
      }
      if result.response == nil { _ = core.noteNoReply(result, server: ip, sentAt: sentAt, zone: zone, kind: kind) }
      guard let rcode = result.response?.rcode else { return false }
      return rcode == .noError || rcode == .nxDomain
    }
  }
}

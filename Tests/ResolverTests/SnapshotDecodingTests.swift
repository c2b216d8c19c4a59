import Foundation
import Testing

@testable import Resolver

/// `ctl` and the dashboard decode the statistics of whichever `sotto` answers the control socket:
/// counters an older one does not send read as 0 instead of failing the whole snapshot.
@Suite struct SnapshotDecodingTests {
  @Test func countersMissingFromAnOlderSottoReadAsZero() throws {
    let listener = try JSONDecoder().decode(ListenerStatistics.self, from: Data(#"{"queries": 7}"#.utf8))
    #expect(listener.queries == 7 && listener.sendFailures == 0)
    let upstream = try JSONDecoder().decode(UpstreamSnapshot.self, from: Data(#"{"timeouts": 3}"#.utf8))
    #expect(upstream.timeouts == 3 && upstream.delegationRefreshes == 0)
    #expect(upstream.do53TCP == Do53TCPStatistics())
    let partial = try JSONDecoder().decode(UpstreamSnapshot.self, from: Data(#"{"do53TCP": {"opened": 2}}"#.utf8))
    #expect(partial.do53TCP == Do53TCPStatistics(opened: 2))
  }

  @Test func everyCounterSurvivesARoundTrip() throws {
    var listener = ListenerStatistics()
    listener.sendFailures = 5
    listener.anyQueries = 2
    let l = try JSONDecoder().decode(ListenerStatistics.self, from: JSONEncoder().encode(listener))
    #expect(l == listener)
    let upstream = UpstreamSnapshot(
      mismatchedReplies: 1, coalescedQueries: 2, malformedReplies: 3, outOfBailiwickRecords: 4, aliasLoops: 5,
      budgetExhausted: 6, malformedDoTReplies: 7, mismatchedDoTReplies: 8, malformedDoQReplies: 9,
      resetDoQStreams: 10, timeouts: 11, delegationRefreshes: 12, unresponsiveServers: 13, heldZoneFailures: 14,
      unresponsiveProbes: 15, extraDoTConnections: 16, localConnectionFailures: 17, ednsFallbacks: 18,
      addressChanges: 19,
      do53TCP: Do53TCPStatistics(opened: 20, reusedQueries: 21, oneOff: 22, evicted: 23, retired: 24, resent: 25))
    #expect(try JSONDecoder().decode(UpstreamSnapshot.self, from: JSONEncoder().encode(upstream)) == upstream)
  }
}

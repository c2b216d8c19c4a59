/// Counters of hostile or broken upstream behaviour seen by the iterator (issue 8), shown in
/// `sotto ctl stats` under `upstream`.
public final class HardeningCounters: Sendable {
  /// Records dropped from replies because they lie outside the queried zone.
  let outOfBailiwick = Counter()
  /// CNAME/DNAME loops detected (in one reply or across replies).
  let aliasLoops = Counter()
  /// Resolutions stopped by a budget: query count, referral count or deadline.
  let budgetExhausted = Counter()
  /// Resolutions restarted after their zone's delegation was refreshed.
  let delegationRefreshes = Counter()
  /// Zone steps failed at once because every server of the zone was held as unresponsive.
  let heldZoneFailures = Counter()
  /// Queries sent again without EDNS after a FORMERR or NOTIMP without OPT (RFC 6891 §6.2.2).
  let ednsFallbacks = Counter()

  init() {}

  /// Records dropped as out of bailiwick so far.
  public var outOfBailiwickRecords: Int { outOfBailiwick.value }
  /// CNAME/DNAME loops detected so far.
  public var aliasLoopCount: Int { aliasLoops.value }
  /// Resolutions that ran out of budget so far.
  public var budgetExhaustedCount: Int { budgetExhausted.value }
  /// Delegations refreshed, each with one restart, so far.
  public var delegationRefreshCount: Int { delegationRefreshes.value }
  /// Zone steps failed at once, every server held as unresponsive, so far.
  public var heldZoneFailureCount: Int { heldZoneFailures.value }
  /// Queries sent again without EDNS so far.
  public var ednsFallbackCount: Int { ednsFallbacks.value }
}

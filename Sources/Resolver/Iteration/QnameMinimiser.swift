/// RFC 9156 QNAME minimisation step sizes (R-25..R-27).
enum QnameMinimiser {
  /// MAX_MINIMISE_COUNT.
  static let maxMinimiseCount = 10
  /// MINIMISE_ONE_LAB.
  static let minimiseOneLab = 4

  /// How many labels to add below the current zone cut for the next minimised query, given how
  /// many labels of QNAME are still hidden and how many minimising steps were already taken.
  /// With 18 hidden labels this yields 1,1,1,1,2,2,2,2,3,3.
  static func labelsToExpose(hidden: Int, stepsTaken: Int) -> Int {
    guard hidden > 0 else { return 0 }
    if stepsTaken < minimiseOneLab { return 1 }
    let stepsLeft = maxMinimiseCount - stepsTaken
    if stepsLeft <= 1 { return hidden }
    return max(1, hidden / stepsLeft)
  }

  /// The QNAME to send to the servers of `zone` for `qname`, or `qname` itself when nothing is left to hide.
  static func nextName(qname: DNSName, zone: DNSName, stepsTaken: Int) -> DNSName {
    let hidden = qname.labelCount - zone.labelCount
    let expose = labelsToExpose(hidden: hidden, stepsTaken: stepsTaken)
    return qname.suffix(labelCount: zone.labelCount + expose)
  }
}

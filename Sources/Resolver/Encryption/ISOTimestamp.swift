/// Strict RFC 3339 timestamps for the state file, parsed without Foundation: ICU's date parser
/// crashed (SIGFPE) on a fraction of a hundred digits, found by the state-file fuzzer.
public enum ISOTimestamp {
  /// Unix seconds for `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; nil for anything else.
  /// At most 9 fraction digits; years 1970...9999.
  static func parse(_ text: String) -> Double? {
    let b = Array(text.utf8)
    var i = 0
    func digits(_ n: Int) -> Int? {
      guard i + n <= b.count else { return nil }
      var v = 0
      for k in i..<i + n {
        guard b[k] >= 48 && b[k] <= 57 else { return nil }
        v = v * 10 + Int(b[k] - 48)
      }
      i += n
      return v
    }
    func expect(_ c: UInt8...) -> Bool {
      guard i < b.count, c.contains(b[i]) else { return false }
      i += 1
      return true
    }
    guard let year = digits(4), expect(45), let month = digits(2), expect(45), let day = digits(2),
      expect(84, 116), let hour = digits(2), expect(58), let minute = digits(2), expect(58),
      let second = digits(2)
    else { return nil }
    guard (1970...9999).contains(year), (1...12).contains(month), (1...daysIn(month, year)).contains(day),
      hour < 24, minute < 60, second < 61
    else { return nil }
    var fraction = 0.0
    if i < b.count, b[i] == 46 {  // "."
      i += 1
      var scale = 0.1
      var count = 0
      while i < b.count, b[i] >= 48 && b[i] <= 57 {
        count += 1
        guard count <= 9 else { return nil }
        fraction += Double(b[i] - 48) * scale
        scale /= 10
        i += 1
      }
      guard count > 0 else { return nil }
    }
    var offset = 0
    if expect(90, 122) {  // "Z"
    } else if i < b.count, b[i] == 43 || b[i] == 45 {  // "+" / "-"
      let sign = b[i] == 45 ? -1 : 1
      i += 1
      guard let oh = digits(2), expect(58), let om = digits(2), oh < 24, om < 60 else { return nil }
      offset = sign * (oh * 3600 + om * 60)
    } else {
      return nil
    }
    guard i == b.count else { return nil }
    let days = daysFromCivil(year, month, day)
    return Double(days * 86400 + hour * 3600 + minute * 60 + second - offset) + fraction
  }

  /// `YYYY-MM-DDTHH:MM:SSZ` (with `.mmm` before the Z when `milliseconds`) for Unix seconds, in
  /// UTC; nil outside years 0000...9999. Written by hand: Foundation's ISO8601DateFormatter loads
  /// ICU's calendar data on first use, which stalled the engine thread (and every answer waiting
  /// on it) for milliseconds at the first DoQ handshake.
  public static func format(_ unix: Double, milliseconds: Bool = false) -> String? {
    // 0000-01-01 ..< 10000-01-01
    guard unix.isFinite, unix >= -62_167_219_200, unix < 253_402_300_800 else { return nil }
    var whole = Int(unix.rounded(.down))
    var millis = Int(((unix - Double(whole)) * 1000).rounded())
    if millis == 1000 {
      whole += 1
      millis = 0
    }
    let days = whole >= 0 ? whole / 86400 : (whole - 86399) / 86400  // floor
    let (year, month, day) = civilFromDays(days)
    let second = whole - days * 86400
    func pad(_ v: Int, _ width: Int) -> String {
      let text = String(v)
      return String(repeating: "0", count: max(0, width - text.count)) + text
    }
    let date = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    let time = "\(pad(second / 3600, 2)):\(pad(second / 60 % 60, 2)):\(pad(second % 60, 2))"
    return date + "T" + time + (milliseconds ? "." + pad(millis, 3) : "") + "Z"
  }

  /// (year, month, day), UTC and proleptic Gregorian, of a day counted from 1970-01-01 (Howard
  /// Hinnant's civil_from_days); the one copy for the state file, RRSIG times and the dashboard.
  public static func civilFromDays(_ z0: Int) -> (year: Int, month: Int, day: Int) {
    let z = z0 + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
  }

  static func daysIn(_ month: Int, _ year: Int) -> Int {
    switch month {
    case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
  }

  /// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
  static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
    let y = m <= 2 ? y0 - 1 : y0
    let era = y / 400
    let yoe = y - era * 400
    let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
  }
}

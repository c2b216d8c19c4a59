import CNcurses
import Foundation
import Resolver

/// Pure text helpers: widths are display columns (`wcwidth`), never `String.count`.
public enum Format {
  /// Display width of one character (0 for combining marks, 2 for wide CJK; control → 0).
  public static func width(_ c: Character) -> Int {
    _ = utf8Ready
    if c.isASCII { return c == "\t" || (c.asciiValue ?? 0) >= 32 ? 1 : 0 }
    var w = 0
    for scalar in c.unicodeScalars {
      let x = Int(wcwidth(wchar_t(bitPattern: scalar.value)))
      // -1: not printable in this locale; count it as one column rather than none.
      w += x < 0 ? (w == 0 ? 1 : 0) : x
    }
    return w
  }

  /// `wcwidth` needs a UTF-8 LC_CTYPE; set once.
  static let utf8Ready: Bool = sotto_utf8_ctype() != 0

  /// Display width of `s`.
  public static func width(_ s: String) -> Int {
    // Most cells are ASCII: one column per byte (tab included, other controls none), without
    // walking grapheme clusters (that walk was most of a frame's text work).
    var ascii = 0
    for byte in s.utf8 {
      guard byte < 0x80 else { return s.reduce(0) { $0 + width($1) } }
      if byte >= 32 || byte == 9 { ascii += 1 }
    }
    return ascii
  }

  /// `s` cut to at most `columns` display columns; a cut string ends with "…".
  public static func truncate(_ s: String, _ columns: Int) -> String {
    guard columns > 0 else { return "" }
    if width(s) <= columns { return s }
    var out = ""
    var used = 0
    for c in s {
      let w = width(c)
      if used + w > columns - 1 { break }
      out.append(c)
      used += w
    }
    return out + "…"
  }

  /// `s` truncated or padded with spaces to exactly `columns` display columns.
  public static func pad(_ s: String, _ columns: Int, right: Bool = false) -> String {
    let t = truncate(s, columns)
    let fill = String(repeating: " ", count: max(0, columns - width(t)))
    return right ? fill + t : t + fill
  }

  static let blocks: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

  /// A sparkline of `values` scaled to their maximum; zero is a blank-ish lowest bar, all zero a flat line.
  public static func sparkline(_ values: [Int]) -> String {
    let top = values.max() ?? 0
    guard top > 0 else { return String(repeating: "▁", count: values.count) }
    return String(
      values.map { v -> Character in
        if v <= 0 { return " " }
        let i = Int((Double(v) / Double(top) * Double(blocks.count - 1)).rounded(.up))
        return blocks[min(blocks.count - 1, max(0, i))]
      })
  }

  /// A horizontal meter `[████░░░░]` of `fraction` (0...1) in `columns` total columns.
  public static func meter(_ fraction: Double, columns: Int) -> String {
    let inner = max(1, columns - 2)
    let f = min(1, max(0, fraction.isFinite ? fraction : 0))
    let filled = Int((f * Double(inner)).rounded())
    return "[" + String(repeating: "█", count: filled) + String(repeating: "░", count: inner - filled) + "]"
  }

  /// `3d 04:05:06`, `04:05:06`.
  public static func duration(_ seconds: Double) -> String {
    let s = max(0, Int(seconds))
    let hms = String(format: "%02d:%02d:%02d", (s / 3600) % 24, (s / 60) % 60, s % 60)
    return s >= 86_400 ? "\(s / 86_400)d \(hms)" : hms
  }

  /// `97%`.
  public static func percent(_ f: Double) -> String { "\(Int((f * 100).rounded()))%" }

  /// `1.2k`, `34`, `5.6M`.
  public static func count(_ n: Int) -> String {
    if n >= 1_000_000 { return String(format: "%.1fM", Double(n) / 1_000_000) }
    if n >= 10_000 { return "\(n / 1000)k" }
    if n >= 1_000 { return String(format: "%.1fk", Double(n) / 1000) }
    return "\(n)"
  }

  /// `12ms`, `1.5s`, `-`.
  public static func millis(_ ms: Double?) -> String {
    guard let ms, ms.isFinite else { return "-" }
    if ms >= 1000 { return String(format: "%.1fs", ms / 1000) }
    if ms >= 10 { return "\(Int(ms.rounded()))ms" }
    return String(format: "%.1fms", ms)
  }

  /// Wall clock `HH:MM:SS` (UTC) of a Unix time.
  public static func clock(_ t: Double) -> String {
    let s = Int(t) % 86_400
    return String(format: "%02d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
  }

  /// `HH:MM` if within a day of `now`, else `MM-DD HH:MM` (UTC).
  public static func until(_ t: Double, now: Double) -> String {
    // Computed, not formatted: a DateFormatter per damped cell per frame was half of the
    // dashboard thread's CPU. A time no clock shows (from an attached server's JSON) is "?".
    guard t.isFinite, abs(t) < 1e13 else { return "?" }
    let seconds = Int(t.rounded(.down))
    let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
    let s = seconds - days * 86_400
    let hm = twoDigits(s / 3600) + ":" + twoDigits((s / 60) % 60)
    if t - now < 43_200 { return hm }
    let (month, day) = monthAndDay(daysSinceEpoch: days)
    return twoDigits(month) + "-" + twoDigits(day) + " " + hm
  }

  /// `n` (0...99) as two digits.
  static func twoDigits(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

  /// Month and day (UTC) of a day counted from 1970-01-01.
  static func monthAndDay(daysSinceEpoch: Int) -> (month: Int, day: Int) {
    let (_, month, day) = ISOTimestamp.civilFromDays(daysSinceEpoch)
    return (month, day)
  }

  /// Short transport name for hop paths: `Do53`, `Do53/TCP`, `DoT`, `DoQ`.
  public static func transport(_ t: TransportKind) -> String { t == .do53UDP ? "Do53" : t.rawValue }

  /// A hop path `. Do53 > test. DoT > example.test. DoT`, or `cache` for none.
  public static func hopPath(_ hops: [HopSummary]) -> String {
    hops.isEmpty ? "cache" : hops.map { "\($0.zone) \(transport($0.transport))" }.joined(separator: " > ")
  }

  /// The DoT/DoQ state as a cell: `established`, `good-idle`, `damped→14:03`, `-`.
  public static func phase(_ t: TransportSnapshot?, now: Double) -> String {
    guard let t else { return "-" }
    if t.phase == "damped", let until = t.dampedUntil { return "damped→" + self.until(until, now: now) }
    return t.phase
  }

  /// Probe counters `s/ok/fail/timeout`.
  public static func probes(_ p: ProbeCounters) -> String { "\(p.started)/\(p.succeeded)/\(p.failed)/\(p.timedOut)" }

  /// Queries by transport `U12 T0 D34` (Do53/UDP, Do53/TCP, DoT, DoQ when any).
  public static func queries(_ q: [String: Int]) -> String {
    var parts = ["U\(count(q["Do53/UDP"] ?? 0))", "T\(count(q["Do53/TCP"] ?? 0))", "D\(count(q["DoT"] ?? 0))"]
    if let doq = q["DoQ"], doq > 0 { parts.append("Q\(count(doq))") }
    return parts.joined(separator: " ")
  }
}

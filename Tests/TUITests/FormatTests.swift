import Resolver
import XCTest

@testable import TUI

final class FormatTests: XCTestCase {
  func testDisplayWidthCountsWideAndCombiningCharacters() {
    XCTAssertEqual(Format.width("abc"), 3)
    XCTAssertEqual(Format.width("例え"), 4)
    XCTAssertEqual(Format.width("e\u{301}"), 1)
    XCTAssertEqual(Format.width("▁█"), 2)
  }

  func testASCIIWidthMatchesTheCharacterWalk() {
    for text in ["", "abc", "a\tb", "a\u{1}b", "\r\n", "127.53.12.1  ns1.dot.test.", "x\u{7f}"] {
      XCTAssertEqual(Format.width(text), text.reduce(0) { $0 + Format.width($1) }, text.debugDescription)
    }
    XCTAssertEqual(Format.width("a\tb"), 3)
    XCTAssertEqual(Format.width("ab例"), 4)  // past the ASCII prefix: the character walk
  }

  func testUntilMatchesAUTCDateFormatter() {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "UTC")
    f.dateFormat = "MM-dd HH:mm"
    let hm = DateFormatter()
    hm.locale = f.locale
    hm.timeZone = f.timeZone
    hm.dateFormat = "HH:mm"
    // Leap days, year ends, a century not a leap year, and a day's last minute.
    let instants: [Double] = [
      0, 59, 86_399, 951_782_400, 951_868_799, 1_709_164_800, 1_709_251_199, 1_735_689_599,
      1_735_689_600, 4_107_542_399, 4_107_542_400, 1_796_000_123.9,
    ]
    for t in instants {
      let date = Date(timeIntervalSince1970: t)
      XCTAssertEqual(Format.until(t, now: t - 86_400), f.string(from: date), "\(t)")
      XCTAssertEqual(Format.until(t, now: t - 60), hm.string(from: date), "\(t)")
    }
    // Not a time: no trap converting it to Int.
    for t in [Double.nan, .infinity, -.infinity, 1e300] {
      XCTAssertEqual(Format.until(t, now: 0), "?")
    }
    // Every day of 2024 and 2100 at 13:37.
    for start in [1_704_067_200.0, 4_102_444_800.0] {
      for day in 0..<366 {
        let t = start + Double(day * 86_400 + 13 * 3600 + 37 * 60)
        XCTAssertEqual(Format.until(t, now: 0), f.string(from: Date(timeIntervalSince1970: t)), "\(t)")
      }
    }
  }

  func testPadAndTruncateByDisplayWidth() {
    XCTAssertEqual(Format.pad("ab", 4), "ab  ")
    XCTAssertEqual(Format.pad("ab", 4, right: true), "  ab")
    XCTAssertEqual(Format.width(Format.pad("例え例え", 5)), 5)
    XCTAssertEqual(Format.pad("例え例え", 5), "例え…")
    XCTAssertEqual(Format.pad("例え例え", 4), "例… ")
    XCTAssertEqual(Format.truncate("abcdef", 4), "abc…")
    XCTAssertEqual(Format.truncate("abc", 3), "abc")
    XCTAssertEqual(Format.truncate("abc", 0), "")
  }

  func testSparkline() {
    XCTAssertEqual(Format.sparkline([0, 0, 0]), "▁▁▁")
    XCTAssertEqual(Format.sparkline([0, 1, 2, 4, 8]), " ▂▃▅█")
    XCTAssertEqual(Format.sparkline([]), "")
    XCTAssertEqual(Format.sparkline([5, 5]), "██")
  }

  func testMeterAndNumbers() {
    XCTAssertEqual(Format.meter(0.5, columns: 6), "[██░░]")
    XCTAssertEqual(Format.meter(2, columns: 4), "[██]")
    XCTAssertEqual(Format.meter(.nan, columns: 4), "[░░]")
    XCTAssertEqual(Format.percent(0.625), "63%")
    XCTAssertEqual(Format.duration(3725), "01:02:05")
    XCTAssertEqual(Format.duration(90_061), "1d 01:01:01")
    XCTAssertEqual(Format.count(1234), "1.2k")
    XCTAssertEqual(Format.count(12_345), "12k")
    XCTAssertEqual(Format.millis(nil), "-")
    XCTAssertEqual(Format.millis(3.25), "3.2ms")
    XCTAssertEqual(Format.millis(1500), "1.5s")
  }

  func testHopPath() {
    let hops = [
      HopSummary(zone: ".", server: "127.53.0.1", transport: .do53UDP, outcome: "referral"),
      HopSummary(zone: "test.", server: "127.53.1.1", transport: .dot, outcome: "referral"),
      HopSummary(zone: "example.test.", server: "127.53.3.1", transport: .do53TCP, outcome: "answer"),
    ]
    XCTAssertEqual(Format.hopPath(hops), ". Do53 > test. DoT > example.test. Do53/TCP")
    XCTAssertEqual(Format.hopPath([]), "cache")
  }

  func testColumnsFillTheWidth() {
    for width in [80, 100, 120, 200] {
      let r = Renderer(width: width, height: 30)
      let total = r.serverColumns().map { $0.1 + 1 }.reduce(0, +)
      XCTAssertLessThanOrEqual(total, width + 1, "servers at \(width)")
      XCTAssertGreaterThanOrEqual(total, width - 2, "servers at \(width)")
      let q = r.queryColumns().map { $0.1 + 1 }.reduce(0, +)
      XCTAssertLessThanOrEqual(q, width + 1, "queries at \(width)")
    }
  }

  func testLineFittedNeverExceedsWidth() {
    let line = Line([Segment("例え例え例え"), Segment("abc")]).fitted(7, fill: .normal)
    XCTAssertEqual(Format.width(line.text), 7)
  }
}

import Foundation
import Testing

@testable import Resolver

/// The hand-written RFC 3339 writer (no ICU on the engine thread) against Foundation's formatter.
@Suite struct ISOTimestampFormatTests {
  static let samples: [Double] = [
    0, 1, 59.9994, 59.9996, 86_399.5, 951_782_400, 951_868_799.25, 1_796_409_502.749663, 4_107_542_400,
    4_102_444_800.001, 253_402_300_799.0004, -1, -86_400.5,
  ]

  @Test(arguments: samples) func writesWhatFoundationWrites(_ t: Double) {
    let plain = ISO8601DateFormatter()
    let millis = ISO8601DateFormatter()
    millis.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    let date = Date(timeIntervalSince1970: t)
    #expect(ISOTimestamp.format(t) == plain.string(from: date))
    #expect(ISOTimestamp.format(t, milliseconds: true) == millis.string(from: date))
  }

  @Test func readsBackToTheMillisecond() throws {
    for t in Self.samples where t >= 0 {
      let text = try #require(ISOTimestamp.format(t, milliseconds: true))
      let back = try #require(ISOTimestamp.parse(text))
      #expect(abs(back - t) <= 0.0005 + 1e-9, "\(text)")
    }
  }

  @Test func refusesWhatItCannotWrite() {
    #expect(ISOTimestamp.format(.infinity) == nil)
    #expect(ISOTimestamp.format(.nan) == nil)
    #expect(ISOTimestamp.format(253_402_300_800) == nil)
    #expect(StateFile.iso(.infinity) == "1970-01-01T00:00:00.000Z")
  }
}

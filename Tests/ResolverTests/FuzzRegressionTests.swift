import Foundation
import Testing
@testable import Resolver

/// Inputs that once broke a fuzz target (Fuzz/), kept in Fixtures/fuzz/ as `<target>-<what>`.
/// Each is run through the invariant of its target (the same checks as Fuzz/*Target.swift).
@Suite struct FuzzRegressionTests {
  static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures/fuzz")

  static var inputs: [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
  }

  @Test func everyCommittedCrashInputIsPresent() {
    #expect(Self.inputs.count >= 1, "no inputs in \(Self.directory.path)")
  }

  @Test(arguments: inputs) func crashInputNowHoldsItsInvariant(_ file: String) throws {
    let bytes = [UInt8](try Data(contentsOf: Self.directory.appendingPathComponent(file)))
    let target = String(file.prefix { $0 != "-" })
    switch target {
    case "message": try Self.messageRoundTrip(bytes)
    case "presentation": try Self.presentationRoundTrip(bytes)
    case "zone":
      for rr in (try? ZoneFile.parse(String(decoding: bytes, as: UTF8.self))) ?? [] {
        try Self.rdataRoundTrip(rr.rdata, type: rr.type)
      }
    case "statefile":
      if let doc = try? StateFile.decode(Data(bytes)) {
        #expect(StateFile.records(doc).count == doc.servers.count)
        #expect(try StateFile.decode(StateFile.encode(doc)).servers.count == doc.servers.count)
      }
    default: Issue.record("unknown fuzz target prefix in \(file)")
    }
  }

  /// The NSEC found by the presentation fuzzer: `A ... TYPE1` lists A twice.
  @Test func nsecWithRepeatedTypeEqualsItsWireForm() throws {
    let rdata = try RData.parse(presentation: "b.example. A NS TYPE1 A", type: .nsec, origin: .root)
    #expect(rdata == .nsec(nextName: wn("b.example."), types: [.a, .ns]))
    try Self.rdataRoundTrip(rdata, type: .nsec)
  }

  /// `\# 0` for MX (presentation fuzzer) was kept as raw empty RDATA that no wire parser accepts;
  /// the generic form of a known type must now decode as that type (RFC 3597 §5).
  @Test func genericFormOfAKnownTypeMustBeValidRDATA() throws {
    #expect(throws: WireError.self) { try RData.parse(presentation: "\\# 0", type: .mx, origin: .root) }
    #expect(throws: WireError.self) { try RData.parse(presentation: "\\# 2 0001", type: .a, origin: .root) }
    let mx = try RData.parse(presentation: "\\# 3 000a00", type: .mx, origin: .root)
    #expect(mx == .mx(preference: 10, exchange: .root))
    #expect(try RData.parse(presentation: "\\# 0", type: RRType(65281), origin: .root) == .unknown([]))
    // A TXT without strings (wire RDLENGTH 0) prints in the generic form, which reads back.
    let emptyTXT = try RData.parse(presentation: "\\# 0", type: .txt, origin: .root)
    #expect(emptyTXT == .txt([]))
    #expect(emptyTXT.presentation(for: .txt) == "\\# 0")
    try Self.rdataRoundTrip(emptyTXT, type: .txt)
  }

  /// The timestamp that made ICU's date parser divide by zero (statefile fuzzer), and the forms
  /// the state file writes.
  @Test func stateFileTimestampsAreParsedStrictlyWithoutICU() {
    let long = "2026-11-28T08:00:00.0" + String(repeating: "7", count: 100) + "0Z"
    #expect(StateFile.date(long) == nil)
    #expect(StateFile.date("2026-11-28T0ke") == nil)
    #expect(StateFile.date("1970-01-01T00:00:00Z") == 0)
    #expect(StateFile.date("2026-11-28T08:00:00Z") == 1_795_852_800)
    #expect(abs((StateFile.date("2026-11-28T08:00:00.050Z") ?? 0) - 1_795_852_800.05) < 1e-6)
    #expect(StateFile.date("2026-11-28T09:00:00+01:00") == 1_795_852_800)
    #expect(StateFile.date("2024-02-29T00:00:00Z") == 1_709_164_800)
    #expect(StateFile.date("2024-02-30T00:00:00Z") == nil)
    let t = 1_795_852_800.25
    #expect(abs((StateFile.date(StateFile.iso(t)) ?? 0) - t) < 1e-6)
  }

  static func messageRoundTrip(_ bytes: [UInt8]) throws {
    guard let m = try? Message.parse(bytes) else { return }
    let wire = m.serialize()
    let again = try Message.parse(wire)
    #expect(again == m)
    #expect(again.serialize() == wire)
  }

  static func presentationRoundTrip(_ bytes: [UInt8]) throws {
    guard let selector = bytes.first else { return }
    let types = RRType.mnemonics.keys.sorted().map { RRType($0) } + [RRType(99), RRType(1234)]
    let type = types[Int(selector) % types.count]
    let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
    guard let rdata = try? RData.parse(presentation: text, type: type, origin: .root) else { return }
    try rdataRoundTrip(rdata, type: type)
  }

  static func rdataRoundTrip(_ rdata: RData, type: RRType) throws {
    let printed = rdata.presentation(for: type)
    #expect(try RData.parse(presentation: printed, type: type, origin: .root) == rdata, "\(type) '\(printed)'")
    var m = Message()
    m.answers = [ResourceRecord(name: .root, type: type, ttl: 1, rdata: rdata)]
    #expect(try Message.parse(m.serialize()).answers.first?.rdata == rdata, "\(type) '\(printed)'")
  }
}

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

  /// The generic form of RRSIG, NSEC3, SVCB and HTTPS decoded to values that printed as text no
  /// parser here read (presentation fuzzer, `\# 3 000000` for SVCB): these text forms now parse.
  @Test func rrsigTextFormParsesAndRoundTrips() throws {
    let text = "A 8 2 3600 20260101000000 1700000000 12345 example. AQID BAU="
    let rrsig = try RData.parse(presentation: text, type: .rrsig, origin: .root)
    #expect(
      rrsig
        == .rrsig(
          typeCovered: .a, algorithm: 8, labels: 2, originalTTL: 3600, expiration: 1_767_225_600,
          inception: 1_700_000_000, keyTag: 12345, signerName: wn("example."), signature: [1, 2, 3, 4, 5]))
    try Self.rdataRoundTrip(rrsig, type: .rrsig)
    try Self.expectGeneric(
      "\\# 19 0001080200000E10FFFFFFFF000000000001 00", type: .rrsig,
      printsAs: "A 8 2 3600 21060207062815 19700101000000 1 . ")
    Self.expectRejected(
      [
        "A 8 2 3600 21060207062816 1 1 .", "A 8 2 3600 20250229000000 1 1 .", "A 8 2 3600 x 1 1 .",
        "WHAT 8 2 1 1 1 1 .",
      ], type: .rrsig)
  }

  @Test func nsec3TextFormParsesAndAnEmptyHashPrintsGeneric() throws {
    let nsec3 = try RData.parse(
      presentation: "1 1 10 AABB 2VPTU5TIMAMQTTGL4LUU9KG21E0AOR3S A RRSIG", type: .nsec3, origin: .root)
    guard case .nsec3(1, 1, 10, [0xAA, 0xBB], let hash, [.a, .rrsig]) = nsec3 else {
      Issue.record("\(nsec3)")
      return
    }
    #expect(hash.count == 20)
    try Self.rdataRoundTrip(nsec3, type: .nsec3)
    try Self.expectGeneric("\\# 6 010000000000", type: .nsec3, printsAs: "\\# 6 010000000000")
    Self.expectRejected(["1 0 0 - A A", "1 0 0 - -", "1 0 0 XYZ 2VPTU5TI", "1 0 0 - 2VPTU5TI NOTATYPE"], type: .nsec3)
  }

  @Test func svcbTextFormParsesEveryKeyAndRoundTrips() throws {
    let text =
      #"1 svc.example. alpn="h2,h\,3" port=443 ipv4hint=192.0.2.1,192.0.2.2 ech=AQID ipv6hint=::1 no-default-alpn mandatory=alpn,key9 key9="a\"b""#
    let https = try RData.parse(presentation: text, type: .https, origin: .root)
    let expected: [SVCParam] = [
      SVCParam(key: 1, value: [2] + Array("h2".utf8) + [3] + Array("h,3".utf8)),
      SVCParam(key: 3, value: [0x01, 0xBB]),
      SVCParam(key: 4, value: [192, 0, 2, 1, 192, 0, 2, 2]),
      SVCParam(key: 5, value: [1, 2, 3]),
      SVCParam(key: 6, value: [UInt8](repeating: 0, count: 15) + [1]),
      SVCParam(key: 2, value: []),
      SVCParam(key: 0, value: [0, 1, 0, 9]),
      SVCParam(key: 9, value: Array(#"a"b"#.utf8)),
    ]
    #expect(https == .svcb(priority: 1, target: wn("svc.example."), params: expected))
    try Self.rdataRoundTrip(https, type: .https)
    // `\044` is a comma inside an ID, not a separator; `key3` is the raw form of port.
    let escaped = try RData.parse(presentation: #"1 . alpn=h\0443,x key3="\001\002""#, type: .svcb, origin: .root)
    #expect(
      escaped
        == .svcb(
          priority: 1, target: .root,
          params: [SVCParam(key: 1, value: [3] + Array("h,3".utf8) + [1, 0x78]), SVCParam(key: 3, value: [1, 2])]))
    // An empty alpn value prints as the raw `key1=""` (`alpn=""` would be one empty ID).
    try Self.expectGeneric("\\# 7 0000 00 0001 0000", type: .svcb, printsAs: #"0 . key1="""#)
    Self.expectRejected(
      ["1 . alpn", #"1 . alpn="""#, "1 . port=65536", "1 . ipv4hint=1.2.3", "1 . color=red", #"1 . "x""#], type: .svcb)
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

  /// The generic form `generic` of `type` prints as `printed`, which reads back (text and wire).
  static func expectGeneric(_ generic: String, type: RRType, printsAs printed: String) throws {
    let rdata = try RData.parse(presentation: generic, type: type, origin: .root)
    #expect(rdata.presentation(for: type) == printed)
    try rdataRoundTrip(rdata, type: type)
  }

  /// Each text is refused with a WireError (a clear error, not a crash or a wrong value).
  static func expectRejected(_ texts: [String], type: RRType) {
    for text in texts {
      #expect(throws: WireError.self, "\(type) '\(text)'") {
        try RData.parse(presentation: text, type: type, origin: .root)
      }
    }
  }

  static func rdataRoundTrip(_ rdata: RData, type: RRType) throws {
    let printed = rdata.presentation(for: type)
    #expect(try RData.parse(presentation: printed, type: type, origin: .root) == rdata, "\(type) '\(printed)'")
    var m = Message()
    m.answers = [ResourceRecord(name: .root, type: type, ttl: 1, rdata: rdata)]
    #expect(try Message.parse(m.serialize()).answers.first?.rdata == rdata, "\(type) '\(printed)'")
  }
}

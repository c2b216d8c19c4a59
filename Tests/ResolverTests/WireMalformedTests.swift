import Testing

@testable import Resolver

/// A 12-octet header with the given section counts.
private func hdr(_ qd: UInt16 = 0, _ an: UInt16 = 0, _ ns: UInt16 = 0, _ ar: UInt16 = 0) -> [UInt8] {
  [0xAB, 0xCD, 0x81, 0x00] + [qd, an, ns, ar].flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
}

/// Question `a.` IN A.
private let qA: [UInt8] = [1, 0x61, 0, 0, 1, 0, 1]

/// A record owned by the root: type, then class IN, TTL 60, RDLENGTH and data as given.
private func rr(_ type: UInt16, rdlen: Int, _ data: [UInt8], owner: [UInt8] = [0], rrclass: UInt16 = 1) -> [UInt8] {
  owner + [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(rrclass >> 8), UInt8(rrclass & 0xFF), 0, 0, 0, 60]
    + [UInt8(rdlen >> 8), UInt8(rdlen & 0xFF)] + data
}

private let label63: [UInt8] = [63] + [UInt8](repeating: 0x61, count: 63)
private let soaData: [UInt8] = [0, 0] + [UInt8](repeating: 1, count: 20)  // root mname/rname + 5 numbers
private let optEmpty = rr(41, rdlen: 0, [], rrclass: 1232)

private struct Case: Sendable, CustomTestStringConvertible {
  var label: String
  var bytes: [UInt8]
  var kind: String
  var testDescription: String { label }
}

private let cases: [Case] = [
  Case(label: "empty message", bytes: [], kind: "truncated"),
  Case(label: "truncated header", bytes: [0xAB, 0xCD, 0x81, 0x00, 0], kind: "truncated"),
  Case(label: "truncated question name", bytes: hdr(1) + [1, 0x61], kind: "truncated"),
  Case(label: "truncated label", bytes: hdr(1) + [5, 0x61, 0x62], kind: "truncated"),
  Case(label: "truncated question type/class", bytes: hdr(1) + [1, 0x61, 0, 0], kind: "truncated"),
  Case(label: "truncated pointer", bytes: hdr(1) + [0xC0], kind: "truncated"),
  Case(label: "truncated RR fixed part", bytes: hdr(0, 1) + [0, 0, 1, 0, 1, 0, 0], kind: "truncated"),
  Case(label: "truncated RDATA", bytes: hdr(0, 1) + rr(1, rdlen: 4, [1, 2]), kind: "truncated"),
  Case(label: "pointer to itself", bytes: hdr(1) + [0xC0, 12, 0, 1, 0, 1], kind: "pointerLoop"),
  Case(
    label: "two-step loop: label then pointer back to it", bytes: hdr(1) + [1, 0x61, 0xC0, 12, 0, 1, 0, 1],
    kind: "pointerLoop"),
  Case(
    label: "loop reached through a second pointer",
    bytes: hdr(2) + qA + [1, 0x62, 0xC0, 19, 0, 1, 0, 1] + [0xC0, 19, 0, 1, 0, 1],
    kind: "pointerLoop"),
  Case(label: "forward pointer", bytes: hdr(1) + [0xC0, 20, 0, 1, 0, 1, 1, 0x61, 0], kind: "forwardPointer"),
  Case(label: "pointer beyond end", bytes: hdr(1) + [0xFF, 0xFF, 0, 1, 0, 1], kind: "forwardPointer"),
  Case(label: "label type 0x40", bytes: hdr(1) + [0x41, 0x61, 0, 0, 1, 0, 1], kind: "badLabelType"),
  Case(label: "label type 0x80", bytes: hdr(1) + [0x80, 0x61, 0, 0, 1, 0, 1], kind: "badLabelType"),
  Case(
    label: "label length 64 via raw length octet",
    bytes: hdr(1) + [64] + [UInt8](repeating: 0x61, count: 64) + [0, 0, 1, 0, 1],
    kind: "badLabelType"),
  Case(
    label: "name over 255 via many labels", bytes: hdr(1) + label63 + label63 + label63 + label63 + [0, 0, 1, 0, 1],
    kind: "nameTooLong"),
  Case(
    label: "name over 255 via pointers",
    bytes: hdr(2) + label63 + label63 + label63 + [0, 0, 1, 0, 1] + label63 + [0xC0, 12, 0, 1, 0, 1],
    kind: "nameTooLong"),
  Case(label: "A RDLENGTH too short", bytes: hdr(0, 1) + rr(1, rdlen: 3, [1, 2, 3]), kind: "badRDataLength"),
  Case(label: "A RDLENGTH too long", bytes: hdr(0, 1) + rr(1, rdlen: 5, [1, 2, 3, 4, 5]), kind: "badRDataLength"),
  Case(
    label: "AAAA RDLENGTH too short", bytes: hdr(0, 1) + rr(28, rdlen: 15, [UInt8](repeating: 1, count: 15)),
    kind: "badRDataLength"),
  Case(
    label: "AAAA RDLENGTH too long", bytes: hdr(0, 1) + rr(28, rdlen: 17, [UInt8](repeating: 1, count: 17)),
    kind: "badRDataLength"),
  Case(
    label: "SOA RDLENGTH too short", bytes: hdr(0, 1) + rr(6, rdlen: 21, Array(soaData.prefix(21))),
    kind: "badRDataLength"),
  Case(label: "SOA RDLENGTH too long", bytes: hdr(0, 1) + rr(6, rdlen: 23, soaData + [9]), kind: "badRDataLength"),
  Case(label: "MX RDLENGTH too short", bytes: hdr(0, 1) + rr(15, rdlen: 2, [0, 10]), kind: "badRDataLength"),
  Case(label: "MX RDLENGTH too long", bytes: hdr(0, 1) + rr(15, rdlen: 4, [0, 10, 0, 7]), kind: "badRDataLength"),
  Case(label: "SRV RDLENGTH too short", bytes: hdr(0, 1) + rr(33, rdlen: 5, [0, 1, 0, 2, 0]), kind: "badRDataLength"),
  Case(
    label: "SRV RDLENGTH too long", bytes: hdr(0, 1) + rr(33, rdlen: 8, [0, 1, 0, 2, 0, 53, 0, 0]),
    kind: "badRDataLength"),
  Case(label: "NS name runs past RDLENGTH", bytes: hdr(0, 1) + rr(2, rdlen: 2, [1, 0x61, 0]), kind: "badRDataLength"),
  Case(
    label: "TXT string runs past RDLENGTH", bytes: hdr(0, 1) + rr(16, rdlen: 3, [5, 0x61, 0x62]), kind: "badRDataLength"
  ),
  Case(
    label: "CAA tag runs past RDLENGTH", bytes: hdr(0, 1) + rr(257, rdlen: 3, [0, 5, 0x69]), kind: "badRDataLength"),
  Case(label: "DS too short", bytes: hdr(0, 1) + rr(43, rdlen: 3, [0, 1, 8]), kind: "badRDataLength"),
  Case(
    label: "NSEC3 salt runs past RDLENGTH", bytes: hdr(0, 1) + rr(50, rdlen: 6, [1, 0, 0, 0, 9, 1]),
    kind: "badRDataLength"),
  Case(
    label: "RRSIG fixed part too short", bytes: hdr(0, 1) + rr(46, rdlen: 10, [UInt8](repeating: 0, count: 10)),
    kind: "badRDataLength"),
  Case(label: "NSEC bitmap window length 0", bytes: hdr(0, 1) + rr(47, rdlen: 3, [0, 0, 0]), kind: "badTypeBitmap"),
  Case(
    label: "NSEC bitmap window length 33",
    bytes: hdr(0, 1) + rr(47, rdlen: 36, [0, 0, 33] + [UInt8](repeating: 1, count: 33)), kind: "badTypeBitmap"),
  Case(
    label: "NSEC bitmap windows out of order", bytes: hdr(0, 1) + rr(47, rdlen: 7, [0, 1, 1, 0x40, 0, 1, 0x40]),
    kind: "badTypeBitmap"),
  Case(
    label: "NSEC bitmap window past RDLENGTH", bytes: hdr(0, 1) + rr(47, rdlen: 4, [0, 0, 2, 0x40]),
    kind: "badTypeBitmap"),
  Case(
    label: "NSEC bitmap trailing zero octet", bytes: hdr(0, 1) + rr(47, rdlen: 5, [0, 0, 2, 0x40, 0]),
    kind: "badTypeBitmap"),
  Case(label: "two OPT records", bytes: hdr(0, 0, 0, 2) + optEmpty + optEmpty, kind: "badOPT"),
  Case(
    label: "OPT not at the root", bytes: hdr(0, 0, 0, 1) + rr(41, rdlen: 0, [], owner: [1, 0x61, 0]), kind: "badOPT"),
  Case(label: "OPT in the answer section", bytes: hdr(0, 1) + optEmpty, kind: "badOPT"),
  Case(label: "OPT in the authority section", bytes: hdr(0, 0, 1) + optEmpty, kind: "badOPT"),
  Case(
    label: "OPT option runs past RDLENGTH", bytes: hdr(0, 0, 0, 1) + rr(41, rdlen: 6, [0, 10, 0, 8, 1, 2]),
    kind: "badRDataLength"),
  Case(label: "trailing garbage", bytes: hdr(1) + qA + [0xDE, 0xAD], kind: "trailingData"),
  Case(label: "qdcount larger than data", bytes: hdr(2) + qA, kind: "truncated"),
  Case(label: "ancount larger than data", bytes: hdr(1, 3) + qA + rr(1, rdlen: 4, [1, 2, 3, 4]), kind: "truncated"),
  Case(label: "nscount larger than data", bytes: hdr(0, 0, 1), kind: "truncated"),
  Case(label: "arcount larger than data", bytes: hdr(0, 0, 0, 2) + optEmpty, kind: "truncated"),
]

@Suite struct WireMalformedTests {
  @Test(arguments: cases)
  fileprivate func rejected(_ c: Case) {
    do {
      let m = try Message.parse(c.bytes)
      Issue.record("\(c.label): parsed unexpectedly: \(m)")
    } catch {
      #expect(wireErrorKind(error) == c.kind, "\(c.label): \(error)")
    }
  }

  @Test func thereAreAtLeastThirtyCases() {
    #expect(Set(cases.map(\.label)).count >= 30)
  }

  @Test func exactOffsets() {
    #expect(throws: WireError.pointerLoop(offset: 12)) { try Message.parse(hdr(1) + [0xC0, 12, 0, 1, 0, 1]) }
    #expect(throws: WireError.forwardPointer(offset: 12)) { try Message.parse(hdr(1) + [0xC0, 13, 0, 0, 1, 0, 1]) }
    #expect(throws: WireError.badLabelType(offset: 12)) { try Message.parse(hdr(1) + [0x80, 0, 0, 1, 0, 1]) }
    #expect(throws: WireError.trailingData(count: 2)) { try Message.parse(hdr(1) + qA + [1, 2]) }
    #expect(throws: WireError.badRDataLength(type: 1, offset: 23)) {
      try Message.parse(hdr(0, 1) + rr(1, rdlen: 3, [1, 2, 3]))
    }
    #expect(throws: WireError.truncated(offset: 4)) { try Message.parse([0, 1, 0, 0, 0]) }
  }

  /// Errors read as words wherever they are shown (a CLI error, a root hints or zone file, a
  /// log line), not as the enum's debug form.
  @Test func errorsReadAsWords() {
    #expect("\(WireError.labelTooLong(length: 70))" == "a label of 70 octets (at most 63)")
    #expect("\(WireError.badRDataLength(type: 1, offset: 23))".hasPrefix("the A record's RDATA length at offset 23"))
    #expect("\(WireError.badPresentation("line 1: missing type"))" == "line 1: missing type")
    do {
      _ = try DNSName("a..b")
      Issue.record("a..b parsed")
    } catch {
      #expect("\(error)".hasPrefix("an empty label"), "\(error)")
    }
    for c in cases {
      do {
        _ = try Message.parse(c.bytes)
      } catch {
        let text = "\(error)"
        #expect(
          !text.contains("(offset:") && !text.contains("(length:") && !text.contains("(count:"), "\(c.label): \(text)")
      }
    }
  }

  @Test func validHandBuiltMessagesParse() throws {
    // Sanity check of the helpers: the same shapes, well-formed, are accepted.
    let m = try Message.parse(hdr(1, 1, 0, 1) + qA + rr(1, rdlen: 4, [1, 2, 3, 4], owner: [0xC0, 12]) + optEmpty)
    #expect(m.answers.count == 1)
    #expect(m.edns?.udpPayloadSize == 1232)
    #expect(m.additional.isEmpty)
    let soa = try Message.parse(hdr(0, 1) + rr(6, rdlen: 22, soaData))
    #expect(soa.answers.count == 1)
    let nsec = try Message.parse(hdr(0, 1) + rr(47, rdlen: 7, [0, 0, 1, 0x40, 1, 1, 0x40]))
    #expect(nsec.answers[0].rdata == .nsec(nextName: .root, types: [.a, RRType(257)]))
  }
}

import Testing

@testable import Resolver

/// The dictionary-based compression writer Sotto used before the linear target scan (kept here
/// only as a reference): every suffix written in full is hashed into a dictionary on first lookup.
/// The production `WireWriter` must produce the same bytes for every sequence of writes.
private struct DictionaryWireWriter {
  var bytes: [UInt8] = []
  private var suffixes: [ReferenceSuffix: Int] = [:]
  private var unindexed: [(name: DNSName, written: Int, offset: Int)] = []

  mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }

  mutating func name(_ name: DNSName, compress: Bool) {
    let labels = name.labels
    if compress && !unindexed.isEmpty { indexSuffixes() }
    let start = bytes.count
    var written = 0
    defer { if written > 0 { unindexed.append((name, written, start)) } }
    for i in 0..<labels.count {
      if compress, !suffixes.isEmpty, let off = suffixes[ReferenceSuffix(name: name, start: i)] {
        bytes.append(UInt8(0xC0 | off >> 8))
        bytes.append(UInt8(off & 0xFF))
        return
      }
      bytes.append(UInt8(labels[i].count))
      bytes.append(contentsOf: labels[i])
      written += 1
    }
    bytes.append(0)
  }

  private mutating func indexSuffixes() {
    for entry in unindexed {
      let labels = entry.name.labels
      var offset = entry.offset
      for i in 0..<entry.written {
        guard offset < 0x4000 else { break }
        let suffix = ReferenceSuffix(name: entry.name, start: i)
        if suffixes[suffix] == nil { suffixes[suffix] = offset }
        offset += 1 + labels[i].count
      }
    }
    unindexed.removeAll(keepingCapacity: true)
  }
}

private struct ReferenceSuffix: Hashable {
  let name: DNSName
  let start: Int

  static func == (a: ReferenceSuffix, b: ReferenceSuffix) -> Bool {
    DNSName(uncheckedLabels: Array(a.name.labels[a.start...]))
      == DNSName(uncheckedLabels: Array(b.name.labels[b.start...]))
  }

  func hash(into hasher: inout Hasher) {
    DNSName(uncheckedLabels: Array(name.labels[start...])).hash(into: &hasher)
  }
}

/// A name of 0-5 labels from a small vocabulary (so suffixes repeat), each letter's case random.
private func randomName(_ rng: inout SplitMix64) -> DNSName {
  let vocabulary = [
    "com", "net", "example", "ns1", "ns2", "www", "a", "b", "mail", "x-y", String(repeating: "q", count: 63),
  ]
  let count = Int.random(in: 0...5, using: &rng)
  var labels: [[UInt8]] = []
  var length = 1
  for _ in 0..<count {
    let label = Array(vocabulary.randomElement(using: &rng)!.utf8).map { b in
      Bool.random(using: &rng) && b >= 97 && b <= 122 ? b - 32 : b
    }
    guard length + label.count + 1 <= 255 else { break }
    labels.append(label)
    length += label.count + 1
  }
  return DNSName(uncheckedLabels: labels)
}

/// FNV-1a over the bytes: a short fingerprint of a serialized message for the golden checks.
private func fnv1a(_ bytes: [UInt8]) -> UInt64 {
  var h: UInt64 = 0xCBF2_9CE4_8422_2325
  for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
  return h
}

@Suite struct WireCompressionIdentityTests {
  /// Random sequences of names (compressed or not, mixed case, shared suffixes) and filler
  /// octets, some pushing names past offset 0x4000: the writer matches the dictionary writer
  /// octet for octet.
  @Test(arguments: 0..<40)
  func sameBytesAsDictionaryWriter(seed: Int) {
    var rng = SplitMix64(state: UInt64(seed))
    var reference = DictionaryWireWriter()
    var writer = WireWriter()
    let steps = Int.random(in: 1...120, using: &rng)
    for _ in 0..<steps {
      if Int.random(in: 0..<4, using: &rng) == 0 {
        // Filler (RDATA, fixed fields); now and then a large block so later names sit past 0x4000.
        let n =
          Int.random(in: 0..<8, using: &rng) == 0
          ? Int.random(in: 1000...6000, using: &rng) : Int.random(in: 0...20, using: &rng)
        let filler = [UInt8](repeating: UInt8(truncatingIfNeeded: n), count: n)
        reference.append(filler)
        writer.append(filler)
      } else {
        let name = randomName(&rng)
        let compress = Int.random(in: 0..<5, using: &rng) != 0
        reference.name(name, compress: compress)
        writer.name(name, compress: compress)
      }
      if reference.bytes != writer.bytes {
        Issue.record("seed \(seed): bytes differ after writing \(writer.bytes.count) octets")
        return
      }
    }
    #expect(writer.bytes == reference.bytes)
  }

  /// Messages of the shapes Sotto writes (iterative queries with EDNS options, referrals, CNAME
  /// answers, negative answers with DNSSEC records, truncated answers, a message past 0x4000
  /// octets) serialize to
  /// the same octets as before the compression index changed (length and FNV-1a recorded from
  /// the dictionary-based writer), and parse back to the same message.
  @Test func messagesKeepTheirBytes() throws {
    var query = Message()
    query.header.id = 0xBEEF
    query.questions = [Question(name: wn("WwW.ExAmPlE.CoM."), type: .a)]
    query.edns = EDNS(udpPayloadSize: 1232)

    var referral = Message()
    referral.header.id = 7
    referral.header.qr = true
    referral.questions = [Question(name: wn("www.example.com."), type: .a)]
    referral.authority =
      (1...4).map { wrr("example.com.", .ns, .ns(wn("ns\($0).example.com."))) }
      + [wrr("example.com.", .ns, .ns(wn("ns.other.net.")))]
    referral.additional =
      (1...4).map { wrr("ns\($0).example.com.", .a, .a(IPv4Address(octets: [192, 0, 2, UInt8($0)])!)) }
      + [wrr("ns1.example.com.", .aaaa, .aaaa(IPv6Address("2001:db8::1")!))]
    referral.edns = EDNS(udpPayloadSize: 1232)

    var answer = Message()
    answer.header.id = 0x4242
    answer.header.qr = true
    answer.header.rd = true
    answer.header.ra = true
    answer.questions = [Question(name: wn("Www.Example.Org."), type: .a)]
    answer.answers = [
      wrr("www.example.org.", .cname, .cname(wn("cdn.example.org."))),
      wrr("cdn.example.org.", .cname, .cname(wn("edge.cdn.provider.net."))),
      wrr("edge.cdn.provider.net.", .a, .a(IPv4Address("198.51.100.1")!)),
      wrr("EDGE.cdn.provider.net.", .a, .a(IPv4Address("198.51.100.2")!)),
      wrr("edge.cdn.provider.net.", .mx, .mx(preference: 10, exchange: wn("mail.provider.net."))),
    ]
    answer.edns = EDNS(udpPayloadSize: 1232)

    var negative = Message()
    negative.header.id = 9
    negative.header.qr = true
    negative.header.rcodeLow = 3
    negative.questions = [Question(name: wn("nope.example.net."), type: .aaaa)]
    negative.authority = [
      wrr(
        "example.net.", .soa,
        .soa(
          mname: wn("ns.example.net."), rname: wn("hostmaster.example.net."), serial: 1, refresh: 2, retry: 3,
          expire: 4, minimum: 5)),
      wrr(
        "example.net.", .rrsig,
        .rrsig(
          typeCovered: .soa, algorithm: 13, labels: 2, originalTTL: 300, expiration: 2, inception: 1, keyTag: 7,
          signerName: wn("example.net."), signature: [1, 2, 3])),
      wrr("mail.example.net.", .nsec, .nsec(nextName: wn("ns.example.net."), types: [.a, .rrsig, .nsec])),
      wrr("_sip._tcp.example.net.", .srv, .srv(priority: 1, weight: 2, port: 5060, target: wn("sip.example.net."))),
      wrr("sip.example.net.", .a, .a(IPv4Address("192.0.2.9")!)),
    ]

    var large = Message()
    large.header.qr = true
    large.questions = [Question(name: wn("big.example."), type: .txt)]
    large.answers = (0..<80).map { i in
      wrr("t\(i % 7).big.example.", .txt, .txt([[UInt8](repeating: UInt8(65 + i % 26), count: 230)]))
    }
    // Past 0x4000: "late.big.example." is first written out of pointer range, so its repeats
    // are written in full again (only suffixes below 0x4000 become pointers).
    large.additional = (0..<10).map { i in
      wrr("ns\(i % 4).big.example.", .ns, .ns(wn("host\(i % 3).late.big.example.")))
    }

    // EDNS options (written straight into the message) and a size limit that must leave room
    // for them.
    var cookie = Message()
    cookie.header.id = 0x5151
    cookie.questions = [Question(name: wn("ns1.Example.com."), type: .aaaa)]
    cookie.edns = EDNS(
      udpPayloadSize: 1232,
      options: [
        EDNSOption(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8]),
        EDNSOption(code: 12, data: [UInt8](repeating: 0, count: 17)),
      ])
    cookie.edns?.dnssecOK = true
    var addresses = Message()
    addresses.header.qr = true
    addresses.questions = [Question(name: wn("www.example.org."), type: .a)]
    addresses.answers = (1...6).map {
      wrr("www.example.org.", .a, .a(IPv4Address(octets: [198, 51, 100, UInt8($0)])!))
    }
    addresses.additional = [wrr("www.example.org.", .txt, .txt([[65, 66]]))]
    addresses.edns = cookie.edns

    let cases: [(String, [UInt8], Int, UInt64)] = [
      ("cookie", cookie.serialize(), 77, 0x5c54_1204_e80c_478f),
      ("truncatedWithOptions", addresses.serialize(maxSize: 120), 109, 0xf75b_2802_66e6_b11d),
      ("withinLimit", addresses.serialize(maxSize: 4096), 188, 0xaf8a_d611_7829_d026),
      ("query", query.serialize(), 44, 0x2e01_a898_f9ae_8c0a),
      ("referral", referral.serialize(), 234, 0x67de_a813_007d_96b2),
      ("answer", answer.serialize(), 150, 0x8c52_2fa4_0100_c8d5),
      ("negative", negative.serialize(), 232, 0x53d4_8fa6_f105_62f5),
      ("large", large.serialize(), 19780, 0xb6aa_24de_8764_ce2a),
      ("truncated", answer.serialize(maxSize: 100), 97, 0x7e94_d603_e14d_b05d),
    ]
    for (label, bytes, count, hash) in cases {
      #expect(bytes.count == count, "\(label)")
      #expect(fnv1a(bytes) == hash, "\(label)")
    }
    // "late.big.example." first appears past 0x4000, so all ten NS targets write "late" in full.
    let largeBytes = large.serialize()
    let late: [UInt8] = [4] + Array("late".utf8)
    #expect((0..<largeBytes.count - 5).filter { Array(largeBytes[$0..<$0 + 5]) == late }.count == 10)
    for m in [query, referral, answer, negative, large, cookie, addresses] {
      #expect(try Message.parse(m.serialize()) == m)
    }
  }
}

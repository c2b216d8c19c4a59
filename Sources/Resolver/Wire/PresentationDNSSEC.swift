/// Text forms of RRSIG (RFC 4034 §3.2) and NSEC3 (RFC 5155 §3.3). Their generic `\#` form
/// decodes to these values, which print in this form: without a parser here the printed text
/// did not read back (presentation fuzzer).
extension Fields {
  /// `covered alg labels ttl expiration inception keytag signer base64...`
  mutating func rrsig() throws(WireError) -> RData {
    let t = try word()
    guard let covered = RRType(mnemonic: t) else { throw .badPresentation("unknown type '\(t)' in RRSIG data") }
    return .rrsig(
      typeCovered: covered, algorithm: UInt8(try number(max: 255)), labels: UInt8(try number(max: 255)),
      originalTTL: UInt32(try number(max: 0xFFFF_FFFF)), expiration: try signatureTime(),
      inception: try signatureTime(), keyTag: UInt16(try number(max: 65535)), signerName: try name(),
      signature: try base64Rest())
  }

  /// `alg flags iterations salt hash types...`; salt `-` is empty. The hash is never empty
  /// (RFC 5155 §3.1.7): an NSEC3 with an empty hash prints in the generic form.
  mutating func nsec3() throws(WireError) -> RData {
    let alg = UInt8(try number(max: 255))
    let flags = UInt8(try number(max: 255))
    let iterations = UInt16(try number(max: 65535))
    let saltText = try word()
    var salt: [UInt8] = []
    if saltText != "-" {
      guard let s = TextEncoding.unhex(saltText), !s.isEmpty, s.count <= 255 else {
        throw .badPresentation("bad NSEC3 salt '\(saltText)'")
      }
      salt = s
    }
    let hashText = try word()
    guard let hash = TextEncoding.unbase32hex(hashText), !hash.isEmpty, hash.count <= 255,
      TextEncoding.base32hex(hash) == hashText.uppercased()
    else { throw .badPresentation("bad NSEC3 next hashed owner '\(hashText)'") }
    return .nsec3(
      hashAlgorithm: alg, flags: flags, iterations: iterations, salt: salt, nextHashedOwner: hash,
      types: try typeList())
  }

  /// An RRSIG time: `YYYYMMDDHHmmSS` (UTC) or seconds since 1970 (RFC 4034 §3.2), up to 2^32 - 1.
  mutating func signatureTime() throws(WireError) -> UInt32 {
    let t = try word()
    let bad = WireError.badPresentation("bad RRSIG time '\(t)'")
    guard !t.isEmpty, t.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw bad }
    if t.utf8.count != 14 {
      guard let v = UInt32(t) else { throw bad }
      return v
    }
    let d = t.utf8.map { Int($0 - 48) }
    func field(_ from: Int, _ count: Int) -> Int { d[from..<from + count].reduce(0) { $0 * 10 + $1 } }
    let (y, m, day) = (field(0, 4), field(4, 2), field(6, 2))
    let (hh, mm, ss) = (field(8, 2), field(10, 2), field(12, 2))
    let monthDays = [
      31, (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
    ]
    guard y >= 1970, (1...12).contains(m), day >= 1, day <= monthDays[m - 1], hh < 24, mm < 60, ss < 60 else {
      throw bad
    }
    // Days from civil (Howard Hinnant), the inverse of RData.time.
    let yy = m <= 2 ? y - 1 : y
    let era = yy / 400
    let yoe = yy - era * 400
    let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146_097 + doe - 719_468
    let seconds = days * 86400 + hh * 3600 + mm * 60 + ss
    guard let v = UInt32(exactly: seconds) else { throw .valueOutOfRange("RRSIG time '\(t)' after 2106-02-07") }
    return v
  }
}

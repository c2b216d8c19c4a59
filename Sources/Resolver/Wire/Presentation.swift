import Foundation

extension ResourceRecord {
  /// Zone-file style line as `dig` prints it: `name.\tTTL\tIN\tTYPE\tRDATA`.
  public var presentation: String {
    "\(name)\t\(ttl)\t\(rrclass)\t\(type)\t\(rdata.presentation(for: type))"
  }
}

extension RData {
  /// Presentation format of the data alone (for example `10 mail.example.`).
  public var presentation: String { presentation(for: nil) }

  /// Presentation of the data; `type` only matters for `.unknown` (always `\# len hex`).
  func presentation(for type: RRType?) -> String {
    switch self {
    case .a(let ip): return ip.description
    case .aaaa(let ip): return ip.description
    case .ns(let n), .cname(let n), .dname(let n), .ptr(let n): return n.description
    case .soa(let mname, let rname, let serial, let refresh, let retry, let expire, let minimum):
      return "\(mname) \(rname) \(serial) \(refresh) \(retry) \(expire) \(minimum)"
    case .mx(let pref, let exchange): return "\(pref) \(exchange)"
    case .txt(let strings):
      // Empty RDATA (no string; RFC 1035 wants one) has no text form: the generic one reads back.
      return strings.isEmpty ? "\\# 0" : strings.map(RData.quoted).joined(separator: " ")
    case .srv(let priority, let weight, let port, let target): return "\(priority) \(weight) \(port) \(target)"
    case .caa(let flags, let tag, let value): return "\(flags) \(tag) \(RData.quoted(value))"
    case .ds(let keyTag, let alg, let digestType, let digest):
      return "\(keyTag) \(alg) \(digestType) \(TextEncoding.split(TextEncoding.hex(digest)))"
    case .dnskey(let flags, let proto, let alg, let key):
      return "\(flags) \(proto) \(alg) \(TextEncoding.split(TextEncoding.base64(key)))"
    case .rrsig(let covered, let alg, let labels, let ttl, let exp, let inc, let keyTag, let signer, let sig):
      return "\(covered) \(alg) \(labels) \(ttl) \(RData.time(exp)) \(RData.time(inc)) \(keyTag) \(signer) "
        + TextEncoding.split(TextEncoding.base64(sig))
    case .nsec(let next, let types):
      return ([next.description] + RData.sortedMnemonics(types)).joined(separator: " ")
    case .nsec3(let alg, let flags, let iterations, let salt, let hash, let types):
      // An empty hash (RFC 5155 wants one) has no text form: the generic one reads back.
      guard !hash.isEmpty else { return RData.unknown(wireBytes).presentation(for: type) }
      let saltText = salt.isEmpty ? "-" : TextEncoding.hex(salt)
      let head = "\(alg) \(flags) \(iterations) \(saltText) \(TextEncoding.base32hex(hash))"
      return ([head] + RData.sortedMnemonics(types)).joined(separator: " ")
    case .svcb(let priority, let target, let params):
      return (["\(priority) \(target)"] + params.map(RData.svcParamText)).joined(separator: " ")
    case .unknown(let bytes):
      return bytes.isEmpty ? "\\# 0" : "\\# \(bytes.count) \(TextEncoding.hex(bytes))"
    }
  }

  static func sortedMnemonics(_ types: [RRType]) -> [String] {
    Set(types.map(\.rawValue)).sorted().map { RRType($0).description }
  }

  /// A character-string in double quotes: `"` and `\` escaped, non-printables as `\DDD`.
  static func quoted(_ s: [UInt8]) -> String { "\"" + escaped(s, extra: []) + "\"" }

  static func escaped(_ s: [UInt8], extra: Set<UInt8>) -> String {
    var out = ""
    for b in s {
      if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || extra.contains(b) {
        out += "\\" + String(Character(Unicode.Scalar(b)))
      } else if b >= 0x20 && b < 0x7F {
        out.append(Character(Unicode.Scalar(b)))
      } else {
        let d = String(b)
        out += "\\" + String(repeating: "0", count: 3 - d.count) + d
      }
    }
    return out
  }

  /// RRSIG time as `YYYYMMDDHHmmSS` in UTC.
  static func time(_ t: UInt32) -> String {
    let (y, m, d) = ISOTimestamp.civilFromDays(Int(t / 86400))
    let secs = Int(t % 86400)
    return String(format: "%04d%02d%02d%02d%02d%02d", y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
  }

  static let svcKeyNames = ["mandatory", "alpn", "no-default-alpn", "port", "ipv4hint", "ech", "ipv6hint"]

  static func svcKeyName(_ key: UInt16) -> String {
    key < svcKeyNames.count ? svcKeyNames[Int(key)] : "key\(key)"
  }

  /// One SvcParam as `key=value` (RFC 9460 §2.1); malformed values fall back to `keyN="..."`.
  static func svcParamText(_ p: SVCParam) -> String {
    let raw = "key\(p.key)=\"" + escaped(p.value, extra: []) + "\""
    let v = p.value
    switch p.key {
    case 0:
      guard v.count % 2 == 0, !v.isEmpty else { return raw }
      let keys = stride(from: 0, to: v.count, by: 2).map { svcKeyName(UInt16(v[$0]) << 8 | UInt16(v[$0 + 1])) }
      return "mandatory=" + keys.joined(separator: ",")
    case 1:
      guard !v.isEmpty else { return raw }  // `alpn=""` would be one empty ID
      var ids: [String] = []
      var i = 0
      while i < v.count {
        let n = Int(v[i])
        guard n > 0, i + 1 + n <= v.count else { return raw }
        ids.append(escaped(Array(v[i + 1..<i + 1 + n]), extra: [UInt8(ascii: ",")]))
        i += 1 + n
      }
      return "alpn=\"" + ids.joined(separator: ",") + "\""
    case 2: return v.isEmpty ? "no-default-alpn" : raw
    case 3:
      guard v.count == 2 else { return raw }
      return "port=\(UInt16(v[0]) << 8 | UInt16(v[1]))"
    case 4:
      guard v.count % 4 == 0, !v.isEmpty else { return raw }
      return "ipv4hint="
        + stride(from: 0, to: v.count, by: 4).map {
          IPv4Address(uncheckedOctets: Array(v[$0..<$0 + 4])).description
        }.joined(separator: ",")
    case 5: return "ech=" + TextEncoding.base64(v)
    case 6:
      guard v.count % 16 == 0, !v.isEmpty else { return raw }
      return "ipv6hint="
        + stride(from: 0, to: v.count, by: 16).map {
          IPv6Address.format(Array(v[$0..<$0 + 16]))
        }.joined(separator: ",")
    default: return raw
    }
  }
}

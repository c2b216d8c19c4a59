/// RDATA wire encoding and decoding for the typed record types; anything else is kept raw (RFC 3597).
extension RData {
  /// Types whose embedded names may be compressed on write (RFC 3597 §4).
  static func compressesNames(_ type: RRType) -> Bool {
    switch type {
    case .ns, .cname, .ptr, .soa, .mx: true
    default: false
    }
  }

  /// Decodes RDATA of `type` occupying `r.pos ..< r.end`; the reader must be positioned at its start.
  static func decode(type: RRType, from r: inout WireReader) throws(WireError) -> RData {
    let start = r.pos
    let rdata: RData
    switch type {
    case .a:
      rdata = .a(IPv4Address(uncheckedOctets: try r.take(4)))
    case .aaaa:
      rdata = .aaaa(IPv6Address(uncheckedOctets: try r.take(16)))
    case .ns: rdata = .ns(try r.name())
    case .cname: rdata = .cname(try r.name())
    case .dname: rdata = .dname(try r.name())
    case .ptr: rdata = .ptr(try r.name())
    case .soa:
      rdata = .soa(
        mname: try r.name(), rname: try r.name(), serial: try r.u32(), refresh: try r.u32(),
        retry: try r.u32(), expire: try r.u32(), minimum: try r.u32())
    case .mx:
      rdata = .mx(preference: try r.u16(), exchange: try r.name())
    case .txt:
      var strings: [[UInt8]] = []
      while r.remaining > 0 {
        let n = Int(try r.u8())
        strings.append(try r.take(n))
      }
      rdata = .txt(strings)
    case .srv:
      rdata = .srv(priority: try r.u16(), weight: try r.u16(), port: try r.u16(), target: try r.name())
    case .caa:
      let flags = try r.u8()
      let tagLen = Int(try r.u8())
      let tag = try r.take(tagLen)
      let value = r.rest()
      let alnum = tag.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) }
      if tagLen == 0 || !alnum {
        rdata = .unknown(Array(r.bytes[start..<r.end]))
      } else {
        rdata = .caa(flags: flags, tag: String(decoding: tag, as: UTF8.self), value: value)
      }
    case .ds:
      rdata = .ds(keyTag: try r.u16(), algorithm: try r.u8(), digestType: try r.u8(), digest: r.rest())
    case .dnskey:
      rdata = .dnskey(flags: try r.u16(), protocol: try r.u8(), algorithm: try r.u8(), publicKey: r.rest())
    case .rrsig:
      rdata = .rrsig(
        typeCovered: RRType(try r.u16()), algorithm: try r.u8(), labels: try r.u8(),
        originalTTL: try r.u32(), expiration: try r.u32(), inception: try r.u32(), keyTag: try r.u16(),
        signerName: try r.name(), signature: r.rest())
    case .nsec:
      rdata = .nsec(nextName: try r.name(), types: try TypeBitmap.decode(&r))
    case .nsec3:
      let alg = try r.u8()
      let flags = try r.u8()
      let iterations = try r.u16()
      let salt = try r.take(Int(try r.u8()))
      let hash = try r.take(Int(try r.u8()))
      rdata = .nsec3(
        hashAlgorithm: alg, flags: flags, iterations: iterations, salt: salt, nextHashedOwner: hash,
        types: try TypeBitmap.decode(&r))
    case .svcb, .https:
      let priority = try r.u16()
      let target = try r.name()
      var params: [SVCParam] = []
      while r.remaining > 0 {
        let key = try r.u16()
        let len = Int(try r.u16())
        params.append(SVCParam(key: key, value: try r.take(len)))
      }
      rdata = .svcb(priority: priority, target: target, params: params)
    default:
      rdata = .unknown(r.rest())
    }
    if r.pos != r.end { throw .badRDataLength(type: type.rawValue, offset: start) }
    return rdata
  }

  /// Appends the RDATA (without RDLENGTH). Names are compressed only when `compress` is true.
  func encode(into w: inout WireWriter, compress: Bool) {
    switch self {
    case .a(let ip): w.append(ip.octets)
    case .aaaa(let ip): w.append(ip.octets)
    case .ns(let n), .cname(let n), .dname(let n), .ptr(let n): w.name(n, compress: compress)
    case .soa(let mname, let rname, let serial, let refresh, let retry, let expire, let minimum):
      w.name(mname, compress: compress)
      w.name(rname, compress: compress)
      for v in [serial, refresh, retry, expire, minimum] { w.u32(v) }
    case .mx(let pref, let exchange):
      w.u16(pref)
      w.name(exchange, compress: compress)
    case .txt(let strings):
      for s in strings {
        let chunk = s.prefix(255)
        w.u8(UInt8(chunk.count))
        w.append(Array(chunk))
      }
    case .srv(let priority, let weight, let port, let target):
      w.u16(priority)
      w.u16(weight)
      w.u16(port)
      w.name(target, compress: false)
    case .caa(let flags, let tag, let value):
      let t = Array(tag.utf8.prefix(255))
      w.u8(flags)
      w.u8(UInt8(t.count))
      w.append(t)
      w.append(value)
    case .ds(let keyTag, let alg, let digestType, let digest):
      w.u16(keyTag)
      w.u8(alg)
      w.u8(digestType)
      w.append(digest)
    case .dnskey(let flags, let proto, let alg, let key):
      w.u16(flags)
      w.u8(proto)
      w.u8(alg)
      w.append(key)
    case .rrsig(let covered, let alg, let labels, let ttl, let exp, let inc, let keyTag, let signer, let sig):
      w.u16(covered.rawValue)
      w.u8(alg)
      w.u8(labels)
      w.u32(ttl)
      w.u32(exp)
      w.u32(inc)
      w.u16(keyTag)
      w.name(signer, compress: false)
      w.append(sig)
    case .nsec(let next, let types):
      w.name(next, compress: false)
      w.append(TypeBitmap.encode(types))
    case .nsec3(let alg, let flags, let iterations, let salt, let hash, let types):
      w.u8(alg)
      w.u8(flags)
      w.u16(iterations)
      w.u8(UInt8(min(salt.count, 255)))
      w.append(Array(salt.prefix(255)))
      w.u8(UInt8(min(hash.count, 255)))
      w.append(Array(hash.prefix(255)))
      w.append(TypeBitmap.encode(types))
    case .svcb(let priority, let target, let params):
      w.u16(priority)
      w.name(target, compress: false)
      for p in params {
        w.u16(p.key)
        w.u16(UInt16(min(p.value.count, 0xFFFF)))
        w.append(Array(p.value.prefix(0xFFFF)))
      }
    case .unknown(let bytes): w.append(bytes)
    }
  }

  /// The uncompressed wire form of this RDATA.
  public var wireBytes: [UInt8] {
    var w = WireWriter()
    encode(into: &w, compress: false)
    return w.bytes
  }
}

extension IPv4Address {
  init(uncheckedOctets: [UInt8]) { self.octets = uncheckedOctets }
}

extension IPv6Address {
  init(uncheckedOctets: [UInt8]) { self.octets = uncheckedOctets }
}

/// The fixed 12-octet header of a DNS message, with the counts left to the sections.
public struct Header: Sendable, Hashable {
  public var id: UInt16 = 0
  public var qr = false
  public var opcode: UInt8 = 0
  public var aa = false
  public var tc = false
  public var rd = false
  public var ra = false
  public var z = false
  public var ad = false
  public var cd = false
  /// The low four bits of the response code; see `Message.rcode` for the full value.
  public var rcodeLow: UInt8 = 0
  public init() {}
}

/// One entry of the question section.
public struct Question: Sendable, Hashable, CustomStringConvertible {
  public var name: DNSName
  public var type: RRType
  public var qclass: RRClass
  public init(name: DNSName, type: RRType, qclass: RRClass = .in) {
    self.name = name
    self.type = type
    self.qclass = qclass
  }
  public var description: String { "\(name) \(qclass) \(type)" }
}

/// One resource record with typed data.
public struct ResourceRecord: Sendable, Hashable {
  public var name: DNSName
  public var type: RRType
  public var rrclass: RRClass
  public var ttl: UInt32
  public var rdata: RData
  public init(name: DNSName, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdata: RData) {
    self.name = name
    self.type = type
    self.rrclass = rrclass
    self.ttl = ttl
    self.rdata = rdata
  }
}

/// One EDNS(0) option (RFC 6891 §6.1.2).
public struct EDNSOption: Sendable, Hashable {
  public var code: UInt16
  public var data: [UInt8]
  public init(code: UInt16, data: [UInt8]) {
    self.code = code
    self.data = data
  }
  public static let cookieCode: UInt16 = 10
  public static let keepaliveCode: UInt16 = 11
  public static let paddingCode: UInt16 = 12
  /// Extended DNS Error (RFC 8914).
  public static let extendedErrorCode: UInt16 = 15

  /// An Extended DNS Error option: INFO-CODE and optional EXTRA-TEXT (RFC 8914 §2).
  public static func extendedError(_ infoCode: UInt16, text: String = "") -> EDNSOption {
    EDNSOption(code: extendedErrorCode, data: [UInt8(infoCode >> 8), UInt8(infoCode & 0xFF)] + Array(text.utf8))
  }

  /// EDE INFO-CODE 3, "Stale Answer" (RFC 8914 §4.4).
  public static let staleAnswer: UInt16 = 3
  /// EDE INFO-CODE 18, "Prohibited" (RFC 8914 §4.19).
  public static let prohibited: UInt16 = 18
  /// Extended DNS Error 19, Stale NXDOMAIN Answer (RFC 8914 §4.20).
  public static let staleNXDomainAnswer: UInt16 = 19
  /// Extended DNS Error 26, Too Early (RFC 9250 §4.5): the server will not answer in 0-RTT.
  public static let tooEarly: UInt16 = 26

  /// The INFO-CODE of an Extended DNS Error option, nil for any other option or a short one.
  public var extendedErrorInfoCode: UInt16? {
    guard code == Self.extendedErrorCode, data.count >= 2 else { return nil }
    return UInt16(data[0]) << 8 | UInt16(data[1])
  }
}

/// The EDNS(0) pseudo-record's fields (RFC 6891), kept out of the additional section.
public struct EDNS: Sendable, Hashable {
  public var udpPayloadSize: UInt16 = 1232
  /// Upper eight bits of the 12-bit response code.
  public var extendedRCode: UInt8 = 0
  public var version: UInt8 = 0
  public var dnssecOK = false
  public var options: [EDNSOption] = []
  public init(udpPayloadSize: UInt16 = 1232, options: [EDNSOption] = []) {
    self.udpPayloadSize = udpPayloadSize
    self.options = options
  }
}

/// A whole DNS message. `parse` and `serialize` live in `MessageParser.swift` / `MessageWriter.swift`.
public struct Message: Sendable, Hashable {
  public var header = Header()
  public var questions: [Question] = []
  public var answers: [ResourceRecord] = []
  public var authority: [ResourceRecord] = []
  /// Additional records without the OPT pseudo-record (that one is in `edns`).
  public var additional: [ResourceRecord] = []
  public var edns: EDNS?
  public init() {}

  /// The full response code: header bits plus EDNS extended bits.
  public var rcode: RCode {
    get { RCode(UInt16(edns?.extendedRCode ?? 0) << 4 | UInt16(header.rcodeLow & 0x0F)) }
    set {
      header.rcodeLow = UInt8(newValue.rawValue & 0x0F)
      if newValue.rawValue > 15 {
        if edns == nil { edns = EDNS() }
        edns?.extendedRCode = UInt8(truncatingIfNeeded: newValue.rawValue >> 4)
      } else {
        edns?.extendedRCode = 0
      }
    }
  }
}

/// Turns client queries into responses: the acceptance rules, the response's header and sections,
/// and the size limit. Pure: the rules produce `Message` values; serialization is a separate step.
public enum ResponseBuilder {
  /// The EDNS UDP payload size we advertise and the most we send over UDP (DNS Flag Day 2020).
  public static let ourUDPPayloadSize: UInt16 = 1232

  /// What to do with a parsed query.
  public enum Verdict: Sendable, Hashable {
    /// Acceptable: resolve this question and answer with `response(to:resolution:)`.
    case resolve(Question)
    /// Answer at once with this error response.
    case respond(Message)
    /// Send nothing.
    case drop
  }

  /// Applies the acceptance rules to a parsed query.
  public static func verdict(for query: Message) -> Verdict {
    if query.header.qr { return .drop }  // a response sent to us: never answer (avoids loops)
    if let edns = query.edns, edns.version > 0 {  // RFC 6891 §6.1.3
      return .respond(error(.badVers, to: query))
    }
    if query.header.opcode != 0 { return .respond(error(.notImp, to: query)) }
    guard query.questions.count == 1, let question = query.questions.first else {
      return .respond(error(.formErr, to: query))
    }
    if question.qclass != .in { return .respond(error(.refused, to: query)) }
    // RD=0 asks what the cache holds: answering it would let anyone who can query us learn which
    // names our other clients looked up, and when (cache snooping). Refused, as Unbound's `allow`
    // access control refuses it; EDE 18 says why to clients that sent EDNS.
    if !query.header.rd { return .respond(nonRecursiveRefusal(to: query)) }
    if question.type == .axfr || question.type == .ixfr { return .respond(error(.refused, to: query)) }
    // Meta-types other than ANY (OPT, TKEY, TSIG, MAILA, MAILB, 128-248; RFC 6895 §3.1) are not
    // questions to resolve: an authority would answer FORMERR or NOTIMP, counted as its failure,
    // after several upstream queries. FORMERR at once.
    if question.type.isMeta && question.type != .any { return .respond(error(.formErr, to: query)) }
    // RFC 8482 §4.2: ANY is not resolved as such; the name is looked up (type A) only to learn
    // whether it exists, and `response(to:resolution:)` answers with one synthesized HINFO.
    if question.type == .any { return .resolve(Question(name: question.name, type: .a, qclass: question.qclass)) }
    return .resolve(question)
  }

  /// The response header and question for `query`, with `rcode` and no records: same ID, QR=1,
  /// opcode, RD and CD copied, RA=1, AA=0; the question (with the client's case) only when there is
  /// exactly one; an OPT (our size, no options) iff the query had one.
  public static func error(_ rcode: RCode, to query: Message) -> Message {
    var response = Message()
    writeError(rcode, to: query, into: &response)
    return response
  }

  /// `error` written into `response`, a fresh `Message()` the caller keeps: built in place, not
  /// copied out of a local into the result (five reference counts and a destroy per response).
  static func writeError(_ rcode: RCode, to query: Message, into response: inout Message) {
    response.header.id = query.header.id
    response.header.qr = true
    response.header.opcode = query.header.opcode
    response.header.rd = query.header.rd
    response.header.cd = query.header.cd
    response.header.ra = true
    response.header.aa = false
    if query.questions.count == 1 { response.questions = query.questions }
    if query.edns != nil { response.edns = EDNS(udpPayloadSize: ourUDPPayloadSize) }
    response.rcode = rcode  // after `edns`: extended codes (BADVERS) live in the OPT
  }

  /// REFUSED for a query with RD=0, with EDE 18 (Prohibited) when the query had EDNS.
  static func nonRecursiveRefusal(to query: Message) -> Message {
    var response = error(.refused, to: query)
    response.edns?.options.append(.extendedError(EDNSOption.prohibited, text: "recursion not desired (RD=0)"))
    return response
  }

  /// The response carrying `resolution` (answer, authority and rcode) for an accepted `query`.
  public static func response(to query: Message, resolution: Resolution) -> Message {
    var response = Message()
    write(resolution, to: query, into: &response)
    return response
  }

  /// `response(to:resolution:)` written into `response`, a fresh `Message()` (as `writeError`).
  static func write(_ resolution: Resolution, to query: Message, into response: inout Message) {
    writeError(resolution.rcode, to: query, into: &response)
    // a stale answer says so, to clients that sent EDNS (RFC 8914 §4.4).
    if resolution.stale, response.edns != nil {
      // RFC 8914 §4.4 / §4.20: a stale NXDOMAIN has a code of its own.
      let code = resolution.rcode == .nxDomain ? EDNSOption.staleNXDomainAnswer : EDNSOption.staleAnswer
      response.edns?.options.append(.extendedError(code))
    }
    if let question = query.questions.first, question.type == .any {
      response = anyResponse(response, question: question, resolution: resolution)
      return
    }
    response.answers = resolution.answer
    response.authority = resolution.authority
  }

  /// TTL of the RFC 8482 HINFO: long, so that clients do not ask ANY again soon (RFC 8482 §4.2).
  public static let anyHINFOTTL: UInt32 = 3600

  /// The RFC 8482 answer to ANY: for a name that exists, one HINFO RR "RFC8482" ""; for one that
  /// does not (or a failed lookup), the lookup's rcode and authority section.
  static func anyResponse(_ base: Message, question: Question, resolution: Resolution) -> Message {
    var response = base
    guard resolution.rcode == .noError else {
      response.authority = resolution.authority
      return response
    }
    let hinfo: [UInt8] = [7] + Array("RFC8482".utf8) + [0]
    response.answers = [
      ResourceRecord(
        name: question.name, type: .hinfo, rrclass: question.qclass, ttl: anyHINFOTTL, rdata: .unknown(hinfo))
    ]
    return response
  }

  /// FORMERR for bytes that could not be parsed: the header's ID, opcode and RD, no question.
  /// Nil (drop) when there is no complete 12-octet header or the message claims to be a response.
  public static func formErr(forUnparsable raw: [UInt8]) -> Message? {
    guard raw.count >= 12 else { return nil }
    let flags = raw[2]
    guard flags & 0x80 == 0 else { return nil }
    var response = Message()
    response.header.id = UInt16(raw[0]) << 8 | UInt16(raw[1])
    response.header.qr = true
    response.header.opcode = (flags >> 3) & 0x0F
    response.header.rd = flags & 0x01 != 0
    response.header.ra = true
    response.rcode = .formErr
    return response
  }

  /// Largest response for `query`: 65535 over TCP; over UDP 512 without EDNS, else the client's
  /// advertised size (at least 512) capped at ours.
  public static func maxResponseSize(for query: Message?, overTCP: Bool) -> Int {
    if overTCP { return 65_535 }
    guard let edns = query?.edns else { return 512 }
    return min(max(Int(edns.udpPayloadSize), 512), Int(ourUDPPayloadSize))
  }

  /// Wire form of `response`, truncated (records dropped, TC set) to the limit for `query`.
  public static func serialize(_ response: Message, for query: Message?, overTCP: Bool) -> [UInt8] {
    response.serialize(maxSize: maxResponseSize(for: query, overTCP: overTCP))
  }

  /// Block size of padded responses (RFC 8467 §4.1: responders pad to a multiple of 468 octets).
  public static let responsePaddingBlock = 468

  /// `serialize` for a client `transport`: over DoT and DoQ a response to a padded query is padded
  /// too, with an EDNS(0) Padding option to a multiple of `responsePaddingBlock` octets (RFC 7830,
  /// RFC 8467 §4.1: only when the query was; OE-32, RFC 9250 §5.4).
  static func serialize(_ response: Message, for query: Message?, via transport: ClientTransport) -> [UInt8] {
    guard transport.isEncrypted, var edns = response.edns,
      query?.edns?.options.contains(where: { $0.code == EDNSOption.paddingCode }) == true
    else { return serialize(response, for: query, overTCP: transport.isStream) }
    edns.options.removeAll { $0.code == EDNSOption.paddingCode }
    var padded = response
    padded.edns = edns
    let unpadded = padded.serialize().count + 4  // the option's header counts
    let fill = (responsePaddingBlock - unpadded % responsePaddingBlock) % responsePaddingBlock
    guard unpadded + fill <= 65_535 else { return serialize(response, for: query, overTCP: true) }
    padded.edns?.options.append(EDNSOption(code: EDNSOption.paddingCode, data: [UInt8](repeating: 0, count: fill)))
    return padded.serialize()
  }
}

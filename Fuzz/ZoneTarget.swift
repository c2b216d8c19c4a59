/// Zone-file and root-hints parser: any text either throws or gives records whose RDATA
/// round-trips; root hints built from it never crash.
@Sendable func fuzzZone(_ bytes: [UInt8]) {
  let text = String(decoding: bytes, as: UTF8.self)
  if let records = try? ZoneFile.parse(text) {
    for rr in records.prefix(16) { checkPresentationRoundTrip(rr.rdata, type: rr.type) }
  }
  if let hints = try? RootHints(fileText: text) {
    guard !hints.servers.isEmpty, hints.servers.allSatisfy({ !$0.addresses.isEmpty }) else {
      fuzzFailure("root hints with a server without addresses")
    }
  }
}

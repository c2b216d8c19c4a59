/// Name decompression: the first byte picks where in the rest the name starts. A name that
/// reads back obeys the 63/255 octet limits and survives wire and text round trips.
@Sendable func fuzzName(_ bytes: [UInt8]) {
  guard bytes.count >= 2 else { return }
  let body = Array(bytes.dropFirst())
  var reader = WireReader(body)
  reader.pos = Int(bytes[0]) % body.count
  guard let name = try? reader.name() else { return }
  let wireLength = name.labels.reduce(1) { $0 + $1.count + 1 }
  guard wireLength <= 255 else { fuzzFailure("name of \(wireLength) octets accepted") }
  guard name.labels.allSatisfy({ (1...63).contains($0.count) }) else { fuzzFailure("bad label length in \(name)") }
  // The one-array form and its walks agree with the labels.
  guard name.wireLength == wireLength, name.labelCount == name.labels.count else {
    fuzzFailure("wire length or label count of \(name) disagrees with its labels")
  }
  let lower = name.lowercased()
  guard lower == name, lower.hashValue == name.hashValue,
    name.isSubdomain(of: name.suffix(labelCount: 1))
  else {
    fuzzFailure("case folding or suffix of \(name) broken")
  }
  if let parent = name.parent, !name.isSubdomain(of: parent) || parent.isSubdomain(of: name) {
    fuzzFailure("parent of \(name) is not its ancestor")
  }

  var writer = WireWriter()
  writer.name(name, compress: false)
  var back = WireReader(writer.bytes)
  guard let reread = try? back.name(), reread == name, back.pos == writer.bytes.count else {
    fuzzFailure("wire round trip of \(name) failed")
  }
  guard let fromText = try? DNSName(name.description), fromText == name else {
    fuzzFailure("text round trip of \(name) failed")
  }
}

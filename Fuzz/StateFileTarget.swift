import Foundation

/// Encryption state-file loader: any bytes either fail with a DecodeFailure or give a
/// document that converts to server records and that, written again, loads again.
@Sendable func fuzzStateFile(_ bytes: [UInt8]) {
  guard let doc = try? StateFile.decode(Data(bytes)) else { return }
  let records = StateFile.records(doc)
  guard records.count <= doc.servers.count else { fuzzFailure("more records than servers") }
  let written = StateFile.encode(doc)
  do {
    let again = try StateFile.decode(written)
    guard again.servers.count == doc.servers.count else { fuzzFailure("server count changed on rewrite") }
  } catch {
    fuzzFailure("a document we wrote does not load: \(error)")
  }
}

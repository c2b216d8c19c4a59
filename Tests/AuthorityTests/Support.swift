import Foundation
import NIOCore
import Resolver
import Synchronization

@testable import Authority

/// A query message for tests.
func testQuery(_ name: String, _ type: RRType = .a, id: UInt16 = 0) throws -> Message {
  var m = Message()
  m.header.id = id
  m.questions = [Question(name: try DNSName(name), type: type)]
  m.edns = EDNS(udpPayloadSize: 1232)
  return m
}

/// The demo's zones as an engine serving all of them (each test picks what it asks).
func demoEngine(_ origin: String) throws -> AuthorityEngine {
  let texts = DemoZones.texts()
  guard let text = texts[origin] else { throw DemoError.missingZone(origin) }
  return AuthorityEngine(zones: [try Zone(origin: try DNSName(origin), text: text)])
}

/// Records a client connection's tickets and close reason.
final class ClientLog: Sendable {
  let tickets = Mutex<[[UInt8]]>([])
  let closes = Mutex<[EncryptedFailure]>([])
  var onTicket: @Sendable ([UInt8]) -> Void { { t in self.tickets.withLock { $0.append(t) } } }
  var onClose: @Sendable (EncryptedFailure) -> Void { { f in self.closes.withLock { $0.append(f) } } }

  /// Polls `condition` for up to `seconds`.
  func wait(_ seconds: Double = 3, _ condition: @Sendable (ClientLog) -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if condition(self) { return true }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return condition(self)
  }
}

/// A CA file on disk for the clients' certificate check.
func writeCA(_ factory: CertificateFactory) throws -> String {
  let path = FileManager.default.temporaryDirectory.appendingPathComponent("sotto-test-ca-\(UUID().uuidString).pem")
    .path
  try factory.writeCA(to: path)
  return path
}

/// `testQuery` with RD=1, as a stub sends it to a recursive resolver's listener (which refuses RD=0).
func recursiveQuery(_ name: String, _ type: RRType = .a, id: UInt16 = 0) throws -> Message {
  var m = try testQuery(name, type, id: id)
  m.header.rd = true
  return m
}

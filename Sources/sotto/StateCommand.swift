import ArgumentParser
import Foundation
import Resolver

/// `sotto state show`: the saved per-server encryption table.
struct StateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "state", abstract: "Inspect the saved per-server encryption state.", subcommands: [Show.self])

  struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the per-server table of a state file.")

    @Option(name: .long, help: "The state file written by --state-file.")
    var stateFile: String

    @Flag(name: .long, help: "Print JSON (the state file's format, with states derived for now).")
    var json = false

    func run() throws {
      let doc: StateFileDocument
      do {
        guard let loaded = try StateFile.load(path: stateFile) else {
          throw ValidationError("state file \(stateFile) does not exist")
        }
        doc = loaded
      } catch let e as StateFileError {
        throw ValidationError("\(e)")
      }
      var settings = EncryptionSettings()
      settings.persistence = doc.settings.persistence
      settings.damping = doc.settings.damping
      settings.timeout = doc.settings.timeout
      let now = Date().timeIntervalSince1970
      let fresh = StateFile.document(
        EncryptionTable(settings: settings, servers: StateFile.records(doc)), now: now)
      if json {
        print(String(decoding: StateFile.encode(fresh), as: UTF8.self))
      } else {
        print(Self.table(fresh), terminator: "")
        let t = EncryptionTable(settings: settings, servers: StateFile.records(doc)).totals
        let byTransport = t.queries.sorted { $0.key.rawValue < $1.key.rawValue }.map {
          "\($0.key.rawValue) \($0.value)"
        }
        print(
          "totals: \(t.servers) servers; queries \(byTransport.joined(separator: ", ")); encrypted "
            + String(format: "%.1f%%", t.encryptedShare * 100)
            + "; probes \(t.probes.started) started, \(t.probes.succeeded) ok, \(t.probes.failed) failed, \(t.probes.timedOut) timed out"
            + "; cleartext to known-good servers \(t.cleartextWhileGood)")
      }
    }

    /// A readable table: one row per server address.
    static func table(_ doc: StateFileDocument) -> String {
      var rows = [
        ["ADDRESS", "NS / ZONE", "DoT", "DoQ", "PROBES s/ok/fail/tmo", "QUERIES", "CERTIFICATE", "LAST FAILURE"]
      ]
      for s in doc.servers {
        let both = [s.dot, s.doq].compactMap { $0 }
        let probes =
          both.isEmpty
          ? "-"
          : "\(both.map(\.probes.started).reduce(0, +))/\(both.map(\.probes.succeeded).reduce(0, +))/"
            + "\(both.map(\.probes.failed).reduce(0, +))/\(both.map(\.probes.timedOut).reduce(0, +))"
        let queries = s.queries.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let certificate = (s.doq?.certificate ?? s.dot?.certificate)
        let cert = certificate.map { $0.problems.isEmpty ? "valid" : $0.problems.joined(separator: ",") } ?? "-"
        let failure = [s.dot?.lastFailure.map { "DoT: \($0)" }, s.doq?.lastFailure.map { "DoQ: \($0)" }]
          .compactMap { $0 }.joined(separator: "; ")
        rows.append([
          s.address, (s.nsNames.first ?? "-") + " / " + (s.zones.first ?? "-"), s.dot?.state ?? "unknown",
          s.doq?.state ?? "unknown", probes, queries.isEmpty ? "-" : queries, cert, failure.isEmpty ? "-" : failure,
        ])
      }
      let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
      var out =
        "state saved \(doc.savedAt); persistence \(Int(doc.settings.persistence)) s, damping \(Int(doc.settings.damping)) s, timeout \(doc.settings.timeout) s\n"
      for row in rows {
        out +=
          zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
          .trimmingCharacters(in: .whitespaces) + "\n"
      }
      return out
    }
  }
}

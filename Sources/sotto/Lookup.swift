import ArgumentParser
import Foundation
import Logging
import NIOPosix
import Resolver

/// `sotto lookup NAME [TYPE]`: one iterative resolution, printed like dig.
struct Lookup: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Resolve one name iteratively and print the answer like dig.")

  @Argument(help: "The name to resolve.")
  var name: String

  @Argument(help: "The record type (A, AAAA, MX, TXT, ... or TYPEnnn).")
  var type: String = "A"

  @Flag(name: .long, help: "Print every query sent on the way.")
  var trace = false

  @Flag(name: .long, help: "Print one JSON object instead of text.")
  var json = false

  @OptionGroup var resolverOptions: ResolverOptions

  func run() async throws {
    let settings = try resolverOptions.settings()
    try ResolverOptions.bootstrapLogging(settings)
    let qname: DNSName
    do {
      qname = try DNSName(name)
    } catch {
      throw ValidationError("invalid name '\(name)': \(error)")
    }
    guard let qtype = RRType(mnemonic: type) else { throw ValidationError("unknown record type '\(type)'") }
    let group = MultiThreadedEventLoopGroup.singleton
    let stack = try ResolverOptions.stack(settings, group: group, logger: Logger(label: "sotto"))
    let question = Question(name: qname, type: qtype)
    let result = await stack.resolver.resolve(question)
    // Let this run's probes finish so the state file learns from them: a probe ends by its own
    // timers, the handshake's (the probe timeout) and then its query's (as long, at least 1 s).
    let probeTimeout = settings.number(.probeTimeout)
    let probeWait = probeTimeout + max(1, probeTimeout) + 0.5
    await stack.shutdown(probeWait: settings.string(.stateFile) == nil ? 0 : probeWait)
    // The event loops are not shut down: a probe may still be running on them, and the process
    // ends right after printing.

    if json {
      print(LookupReport(question: question, resolution: result).jsonText())
    } else if result.rcode == .servFail {
      // A failure is one line on stderr; the trace (when asked) still shows how it happened.
      if trace { print(LookupReport.traceText(result), terminator: "") }
    } else {
      print(LookupReport.text(question: question, resolution: result, trace: trace), terminator: "")
    }
    if result.rcode == .servFail {
      FileHandle.standardError.write(
        Data("sotto: SERVFAIL for \(qname) \(qtype): \(result.failureReason ?? "resolution failed")\n".utf8))
      throw ExitCode(2)
    }
  }
}

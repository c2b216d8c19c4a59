import ArgumentParser
import Resolver

@main
struct Sotto: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sotto",
    abstract: "A recursive DNS resolver that keeps DNS quiet.",
    subcommands: [Lookup.self, Serve.self, StateCommand.self])
}

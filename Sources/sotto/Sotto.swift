import ArgumentParser
import Resolver

@main
struct Sotto: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sotto",
    abstract: "A recursive DNS resolver that keeps DNS quiet.",
    subcommands: [
      Top.self, Demo.self, Lookup.self, Serve.self, Ctl.self, StateCommand.self, ConfigCommand.self, DoQAuthority.self,
    ],
    defaultSubcommand: Top.self)
}

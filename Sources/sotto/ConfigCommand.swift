import ArgumentParser
import Foundation
import Resolver

/// `sotto config check|defaults|table`: the config file and the settings table.
struct ConfigCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "config",
    abstract: "Check a config file, print every default, or print the README's settings table.",
    subcommands: [Check.self, Defaults.self, Table.self])

  /// `sotto config check FILE`: validates and prints the effective settings.
  struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Validate a TOML config file and print the effective settings (defaults plus the file) as TOML.")

    @Argument(help: "The config file (/dev/stdin reads standard input).")
    var file: String

    func run() throws {
      let settings = Settings.defaults.merging(try ResolverOptions.readConfig(file))
      print(settings.tomlText(), terminator: "")
    }
  }

  /// `sotto config defaults`: a complete commented config file.
  struct Defaults: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Print a complete commented config file with every key at its default.")

    func run() { print(Settings.defaultsFileText(), terminator: "") }
  }

  /// `sotto config table`: the settings table in Markdown, as in the README.
  struct Table: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Print the settings table (name, flag, key, default, meaning) in Markdown.")

    func run() { print(Settings.markdownTable(), terminator: "") }
  }
}

/// Writes settings back out: the effective config as TOML, the commented defaults file and the
/// README's settings table.
extension Settings {
  /// The settings that are set, as a TOML file grouped by table (parses back to equal settings).
  public func tomlText() -> String {
    var out: [String] = []
    for section in Setting.sections {
      let set = Setting.all.filter { $0.section == section && self[$0] != nil }
      guard !set.isEmpty else { continue }
      if !out.isEmpty { out.append("") }
      out.append("[\(section)]")
      for setting in set {
        if let value = self[setting] { out.append("\(setting.name) = \(value.toml)") }
      }
    }
    return out.joined(separator: "\n") + "\n"
  }

  /// A complete config file: every key with its meaning, flag and default; keys without a
  /// default are commented out.
  public static func defaultsFileText() -> String {
    var out = [
      "# Sotto configuration (TOML). Every key with its default; `sotto config check FILE` validates a file.",
      "# Flags given on the command line win over this file.",
    ]
    for section in Setting.sections {
      out.append("")
      out.append("[\(section)]")
      for setting in Setting.all where setting.section == section {
        out.append("")
        out.append("# \(setting.meaning) (\(setting.flag))")
        if let value = setting.defaultValue {
          out.append("\(setting.name) = \(value.toml)")
        } else {
          out.append("# default: \(setting.unsetMeaning)")
          out.append("# \(setting.name) = \"\"")
        }
      }
    }
    return out.joined(separator: "\n") + "\n"
  }

  /// The README's settings table in Markdown.
  public static func markdownTable() -> String {
    var out = ["| Setting | Flag | Key | Default | Meaning |", "|---|---|---|---|---|"]
    for setting in Setting.all {
      let def: String
      switch setting.defaultValue {
      case nil: def = setting.unsetMeaning
      case .bool(let b): def = b ? "on" : "off"
      case let value?: def = "`\(value.plain)`"
      }
      let name = setting.name.replacingDashes
      out.append(
        "| \(name) | `\(setting.flag)` | `\(setting.key)` | \(def) | \(setting.meaning.replacingPipes) |")
    }
    return out.joined(separator: "\n") + "\n"
  }
}

extension String {
  fileprivate var replacingDashes: String { String(map { $0 == "-" ? " " : $0 }) }
  fileprivate var replacingPipes: String {
    split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|")
  }
}

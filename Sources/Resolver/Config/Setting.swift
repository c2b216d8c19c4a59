/// What values a setting takes.
public enum SettingKind: Sendable, Hashable {
  case bool
  case integer(ClosedRange<Int>)
  /// A number (integers are accepted); `above` is an exclusive lower bound, `max` inclusive.
  case number(above: Double?, min: Double, max: Double)
  case choice([String])
  case path
  case list

  /// "a positive integer", "an integer from 512 to 4096", "one of doq, dot", ...
  public var expectation: String {
    switch self {
    case .bool: return "true or false"
    case .integer(let r):
      if r.upperBound == Int.max { return r.lowerBound == 1 ? "a positive integer" : "an integer >= \(r.lowerBound)" }
      return "an integer from \(r.lowerBound) to \(r.upperBound)"
    case .number(let above, let min, let max):
      let low =
        above.map { "greater than \(ConfigValue.number($0).plain)" } ?? "at least \(ConfigValue.number(min).plain)"
      return max == .infinity ? "a number \(low)" : "a number \(low) and at most \(ConfigValue.number(max).plain)"
    case .choice(let options): return "one of " + options.joined(separator: ", ")
    case .path: return "a file path (string)"
    case .list: return "a list of strings"
    }
  }
}

/// One operator setting: its config key, its command-line flag, its default and what it does.
public struct Setting: Sendable, Hashable {
  /// `section.name`, as in the config file.
  public let key: String
  /// The command-line flag as shown in the README (`--cache-size N`, `--no-ipv6`).
  public let flag: String
  public let kind: SettingKind
  /// Nil: unset unless given (for example no state file).
  public let defaultValue: ConfigValue?
  /// What the default means when there is none (`built-in IANA roots`).
  public let unsetMeaning: String
  /// One line for the README table and the defaults file.
  public let meaning: String

  public init(
    _ key: String, flag: String, _ kind: SettingKind, default value: ConfigValue?, unset: String = "none",
    _ meaning: String
  ) {
    self.key = key
    self.flag = flag
    self.kind = kind
    self.defaultValue = value
    self.unsetMeaning = unset
    self.meaning = meaning
  }

  /// The table (`resolver`) and the name inside it (`cache-size`).
  public var section: String { String(key.split(separator: ".", maxSplits: 1)[0]) }
  public var name: String { String(key.split(separator: ".", maxSplits: 1).last ?? "") }

  /// Checks type and range; returns the normalised value or a message like
  /// `must be a positive integer, got -3`.
  public func check(_ value: ConfigValue) -> Result<ConfigValue, SettingProblem> {
    let bad = SettingProblem(message: "must be \(kind.expectation), got \(value.plain.isEmpty ? "\"\"" : value.plain)")
    switch (kind, value) {
    case (.bool, .bool): return .success(value)
    case (.integer(let r), .int(let i)): return r.contains(i) ? .success(value) : .failure(bad)
    case (.number(let above, let min, let max), .int(let i)): return check(.number(Double(i)), above, min, max, bad)
    case (.number(let above, let min, let max), .number(let d)): return check(.number(d), above, min, max, bad)
    case (.choice(let options), .string(let s)): return options.contains(s) ? .success(value) : .failure(bad)
    case (.path, .string(let s)): return s.isEmpty ? .failure(bad) : .success(value)
    case (.list, .strings): return .success(value)
    default:
      return .failure(SettingProblem(message: "must be \(kind.expectation), got \(value.typeName) \(value.toml)"))
    }
  }

  private func check(_ value: ConfigValue, _ above: Double?, _ min: Double, _ max: Double, _ bad: SettingProblem)
    -> Result<ConfigValue, SettingProblem>
  {
    guard case .number(let d) = value, d.isFinite else { return .failure(bad) }
    if let above, d <= above { return .failure(bad) }
    return d >= min && d <= max ? .success(value) : .failure(bad)
  }
}

/// Why a value was refused.
public struct SettingProblem: Error, Sendable, Hashable {
  public let message: String
}

extension ConfigValue {
  /// `boolean`, `integer`, ... for messages about wrong types.
  var typeName: String {
    switch self {
    case .bool: "boolean"
    case .int: "integer"
    case .number: "number"
    case .string: "string"
    case .strings: "list"
    }
  }
}

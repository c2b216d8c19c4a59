/// One setting's value as written in a config file or given on the command line.
public enum ConfigValue: Sendable, Hashable {
  case bool(Bool)
  case int(Int)
  case number(Double)
  case string(String)
  case strings([String])

  /// The value in TOML syntax (`true`, `42`, `4.0`, `"text"`, `["a", "b"]`).
  public var toml: String {
    switch self {
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .number(let d):
      return "\(d)"
    case .string(let s): return Self.quote(s)
    case .strings(let list): return "[" + list.map(Self.quote).joined(separator: ", ") + "]"
    }
  }

  /// Short text for tables and messages (`4`, `doq`, `127.0.0.1:5300`).
  public var plain: String {
    switch self {
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)"
    case .string(let s): return s
    case .strings(let list): return list.joined(separator: ", ")
    }
  }

  /// A TOML basic string with the required escapes.
  static func quote(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      case "\r": out += "\\r"
      default:
        if scalar.value < 0x20 || scalar.value == 0x7F {
          let hex = String(scalar.value, radix: 16, uppercase: true)
          out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    return out + "\""
  }
}

/// A set of settings by key (`resolver.cache-size`); absent keys are not set.
public struct Settings: Sendable, Hashable {
  public var values: [String: ConfigValue] = [:]
  /// Line of each key in the file it came from (for messages about combinations).
  public var lines: [String: Int] = [:]

  public init(values: [String: ConfigValue] = [:]) { self.values = values }

  public subscript(_ setting: Setting) -> ConfigValue? {
    get { values[setting.key] }
    set { values[setting.key] = newValue }
  }

  /// These settings with `other`'s on top (the command line over the file over the defaults).
  public func merging(_ other: Settings) -> Settings {
    var out = self
    out.values.merge(other.values) { _, new in new }
    out.lines.merge(other.lines) { _, new in new }
    return out
  }

  public static func == (a: Settings, b: Settings) -> Bool { a.values == b.values }
  public func hash(into h: inout Hasher) { h.combine(values) }

  public func bool(_ s: Setting) -> Bool { if case .bool(let b) = self[s] { b } else { false } }
  public func int(_ s: Setting) -> Int { if case .int(let i) = self[s] { i } else { 0 } }
  public func number(_ s: Setting) -> Double {
    switch self[s] {
    case .number(let d): d
    case .int(let i): Double(i)
    default: 0
    }
  }
  public func string(_ s: Setting) -> String? { if case .string(let t) = self[s] { t } else { nil } }
  public func strings(_ s: Setting) -> [String] { if case .strings(let l) = self[s] { l } else { [] } }
}

import TOMLKit

/// Reads a TOML config file into `Settings`, refusing unknown keys, wrong types and out-of-range
/// values with the file, line and key named.
public enum ConfigFile {
  /// Parses `text` (read from `path`, used in messages); only the keys present are set.
  public static func parse(_ text: String, path: String) throws(ConfigError) -> Settings {
    let table: TOMLTable
    do {
      table = try TOMLTable(string: text)
    } catch let error as TOMLParseError {
      throw ConfigError(
        file: path, line: error.source.begin.line, key: nil, message: "TOML syntax error: \(error.description)")
    } catch {
      throw ConfigError(file: path, line: nil, key: nil, message: "TOML syntax error: \(error)")
    }
    let lines = KeyLines(text)
    var settings = Settings()
    for sectionName in table.keys.sorted(by: { lines.line(section: $0) ?? 0 < lines.line(section: $1) ?? 0 }) {
      guard let value = table[sectionName] else { continue }
      guard Setting.sections.contains(sectionName) else {
        let known = Setting.sections.map { "[\($0)]" }.joined(separator: ", ")
        let what = value.table == nil ? "key '\(sectionName)'" : "table [\(sectionName)]"
        throw ConfigError(
          file: path, line: lines.line(section: sectionName) ?? lines.line(section: nil, key: sectionName),
          key: nil, message: "unknown \(what); settings go in one of \(known)")
      }
      guard let section = value.table else {
        throw ConfigError(
          file: path, line: lines.line(section: nil, key: sectionName), key: sectionName,
          message: "must be a table ([\(sectionName)]), got \(value.type)")
      }
      for name in section.keys {
        let key = "\(sectionName).\(name)"
        let line = lines.line(section: sectionName, key: name)
        guard let setting = Setting.named(key) else {
          let near = Setting.all.filter { $0.section == sectionName }.map(\.name)
          throw ConfigError(
            file: path, line: line, key: key,
            message: "unknown key; [\(sectionName)] has " + near.joined(separator: ", "))
        }
        guard let raw = section[name], let converted = convert(raw) else {
          throw ConfigError(
            file: path, line: line, key: key,
            message: "must be \(setting.kind.expectation), got a TOML \(section[name].map { "\($0.type)" } ?? "value")")
        }
        switch setting.check(converted) {
        case .success(let ok):
          settings[setting] = ok
          settings.lines[key] = line
        case .failure(let problem):
          throw ConfigError(file: path, line: line, key: key, message: problem.message)
        }
      }
    }
    if let problem = settings.combinationProblem() {
      throw ConfigError(file: path, line: settings.lines[problem.key], key: problem.key, message: problem.message)
    }
    return settings
  }

  /// A TOML value as a `ConfigValue`; nil for dates, tables and mixed arrays.
  static func convert(_ value: any TOMLValueConvertible) -> ConfigValue? {
    switch value.type {
    case .bool: return value.bool.map(ConfigValue.bool)
    case .int: return value.int.map(ConfigValue.int)
    case .double: return value.double.map(ConfigValue.number)
    case .string: return value.string.map(ConfigValue.string)
    case .array:
      guard let array = value.array else { return nil }
      var list: [String] = []
      for element in array {
        guard let s = element.string else { return nil }
        list.append(s)
      }
      return .strings(list)
    default: return nil
    }
  }
}

extension Settings {
  /// Settings that are fine alone but not together; nil when there is none.
  public func combinationProblem() -> (key: String, message: String)? {
    if self[.ipv4] == .bool(false) && self[.ipv6] == .bool(false) {
      return (Setting.ipv6.key, "ipv4 and ipv6 both false leave no address family")
    }
    if case .int(let low) = self[.minTTL], case .int(let high) = self[.maxTTL], low > high {
      return (Setting.minTTL.key, "must not exceed max-ttl (\(high)), got \(low)")
    }
    if (self[.tlsCertificate] == nil) != (self[.tlsKey] == nil) {
      let given = self[.tlsCertificate] == nil ? Setting.tlsKey : Setting.tlsCertificate
      return (given.key, "tls-certificate and tls-key go together: give both or neither")
    }
    return nil
  }
}

/// Finds the line of a table header or a key in TOML text (TOMLKit reports no positions for keys).
struct KeyLines {
  let lines: [Substring]

  init(_ text: String) { lines = text.split(separator: "\n", omittingEmptySubsequences: false) }

  /// Line of `[section]`.
  func line(section: String) -> Int? {
    for (i, raw) in lines.enumerated() where Self.header(raw) == section { return i + 1 }
    return nil
  }

  /// Line of `key = ...` inside `[section]` (nil: top level), or of a dotted `section.key = ...`.
  func line(section: String?, key: String) -> Int? {
    var current: String?
    for (i, raw) in lines.enumerated() {
      if let h = Self.header(raw) {
        current = h
        continue
      }
      guard let k = Self.keyName(raw) else { continue }
      if current == section && (k == key || k.hasPrefix(key + ".")) { return i + 1 }
      if let section, current == nil, k == "\(section).\(key)" { return i + 1 }
    }
    return section.flatMap { line(section: $0) }
  }

  /// The name inside `[name]`, or nil when the line is no table header.
  static func header(_ raw: Substring) -> String? {
    let t = raw.trimmingSpaces
    guard t.hasPrefix("["), !t.hasPrefix("[["), let close = t.firstIndex(of: "]") else { return nil }
    return unquote(t[t.index(after: t.startIndex)..<close].trimmingSpaces)
  }

  /// The (possibly dotted) key before `=`, unquoted; nil for comments and blank lines.
  static func keyName(_ raw: Substring) -> String? {
    let t = raw.trimmingSpaces
    guard !t.isEmpty, !t.hasPrefix("#"), let eq = t.firstIndex(of: "=") else { return nil }
    return t[..<eq].split(separator: ".").map { unquote($0.trimmingSpaces) }.joined(separator: ".")
  }

  static func unquote(_ s: Substring) -> String {
    if s.count >= 2, let f = s.first, f == "\"" || f == "'", s.last == f { return String(s.dropFirst().dropLast()) }
    return String(s)
  }
}

extension Substring {
  var trimmingSpaces: Substring {
    var s = self
    while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
    while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
    return s
  }
}

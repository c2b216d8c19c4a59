/// A refused config file or setting: `FILE:LINE: key 'resolver.cache-size': must be ...`.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
  public let file: String
  /// 1-based; nil when the line is not known.
  public let line: Int?
  public let key: String?
  public let message: String

  public init(file: String, line: Int?, key: String?, message: String) {
    self.file = file
    self.line = line
    self.key = key
    self.message = message
  }

  public var description: String {
    let place = line.map { "\(file):\($0)" } ?? file
    return key.map { "\(place): key '\($0)': \(message)" } ?? "\(place): \(message)"
  }
}

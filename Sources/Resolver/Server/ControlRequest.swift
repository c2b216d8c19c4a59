import Foundation

/// The control socket protocol: one JSON object per line each way.
///
/// Requests: `{"cmd":"stats"}`, `{"cmd":"servers"}`, `{"cmd":"queries","limit":50}`,
/// `{"cmd":"flush"}`, `{"cmd":"flush","name":"example.test."}` (that name and everything below),
/// `{"cmd":"flush","negative":true}`, `{"cmd":"forget","ip":"192.0.2.1"}`,
/// `{"cmd":"probe","ip":"192.0.2.1"}`, `{"cmd":"lookup","name":"www.example.test.","type":"A"}`.
/// Responses: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
public struct ControlRequest: Sendable, Codable, Hashable {
  public var cmd: String
  public var name: String?
  public var ip: String?
  public var type: String?
  public var limit: Int?
  public var negative: Bool?

  public init(
    cmd: String, name: String? = nil, ip: String? = nil, type: String? = nil, limit: Int? = nil, negative: Bool? = nil
  ) {
    self.cmd = cmd
    self.name = name
    self.ip = ip
    self.type = type
    self.limit = limit
    self.negative = negative
  }

  /// Every command the server knows.
  public static let commands = ["stats", "servers", "queries", "flush", "forget", "probe", "lookup"]

  /// Decodes one request line; the failure says what is wrong with it in words for the client.
  public static func parse(line: String) -> Result<ControlRequest, ControlRequestError> {
    let data = Data(line.utf8)
    if let request = try? JSONDecoder().decode(ControlRequest.self, from: data) { return .success(request) }
    let isObject = (try? JSONSerialization.jsonObject(with: data)) is [String: Any]
    return .failure(isObject ? .missingCommand : .notAnObject)
  }
}

/// Why a control request line was rejected.
public enum ControlRequestError: Error, Equatable, CustomStringConvertible {
  case notAnObject
  case missingCommand

  public var description: String {
    let what = self == .notAnObject ? "request is not a JSON object" : "request needs a string \"cmd\""
    return "\(what); send one JSON object per line such as {\"cmd\":\"stats\"}"
  }
}

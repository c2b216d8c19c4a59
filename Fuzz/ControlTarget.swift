import Foundation

/// Control-socket request parser: any line is either a request or a specific error; a
/// request encodes to a line that parses back to the same request.
@Sendable func fuzzControl(_ bytes: [UInt8]) {
  let line = String(decoding: bytes, as: UTF8.self)
  switch ControlRequest.parse(line: line) {
  case .failure(let problem):
    guard !problem.description.isEmpty else { fuzzFailure("empty error text") }
  case .success(let request):
    guard let data = try? JSONEncoder().encode(request) else { fuzzFailure("request does not encode") }
    guard case .success(let again) = ControlRequest.parse(line: String(decoding: data, as: UTF8.self)),
      again == request
    else { fuzzFailure("control request round trip failed for \(line)") }
  }
}

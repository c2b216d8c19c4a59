import Foundation

// libFuzzer entry point for every Sotto fuzz target. One binary holds all targets; the
// environment variable SOTTO_FUZZ_TARGET picks one (Fuzz/fuzz.sh sets it). Invariant
// violations call `fuzzFailure`, which traps, so libFuzzer saves the input as a crash.

/// The fuzz targets by name; each lives in its own file.
let fuzzTargets: [String: @Sendable ([UInt8]) -> Void] = [
  "message": fuzzMessage,
  "name": fuzzName,
  "presentation": fuzzPresentation,
  "zone": fuzzZone,
  "statefile": fuzzStateFile,
  "control": fuzzControl,
]

/// The target picked by SOTTO_FUZZ_TARGET, looked up once.
let selectedFuzzTarget: @Sendable ([UInt8]) -> Void = {
  let name = ProcessInfo.processInfo.environment["SOTTO_FUZZ_TARGET"] ?? ""
  guard let target = fuzzTargets[name] else {
    let known = fuzzTargets.keys.sorted().joined(separator: ", ")
    FileHandle.standardError.write(Data("set SOTTO_FUZZ_TARGET to one of: \(known)\n".utf8))
    exit(2)
  }
  return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
  selectedFuzzTarget(bytes)
  return 0
}

/// Reports a broken invariant with the details and traps (libFuzzer records the input).
func fuzzFailure(_ what: String) -> Never {
  FileHandle.standardError.write(Data("fuzz invariant broken: \(what)\n".utf8))
  fatalError(what)
}

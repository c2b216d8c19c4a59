import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The helper that starts NSD for the tests: its child gets stdio and nothing else of the test
/// process. NIO's sockets are not close-on-exec, so an inherited copy would keep another test's
/// connection open after that test closed it.
@Suite struct TestSpawnTests {
  @Test func aSpawnedChildHoldsNoDescriptorPastStdio() throws {
    let inherited = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)  // not close-on-exec
    #expect(inherited >= 3)
    defer { close(inherited) }
    let pid = try NSDDoTServer.spawn("/bin/sleep", ["5"])
    defer {
      kill(pid, SIGKILL)
      var status: Int32 = 0
      waitpid(pid, &status, 0)
    }
    // Once exec'd: the child then shows its own descriptors, not the fork's. `sleep` opens no
    // socket (it may hold a locale file open for a moment).
    var sockets: [String]? = nil
    for _ in 0..<100 {
      let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
      if exe.hasSuffix("sleep") {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        sockets = fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
          .filter { $0.hasPrefix("socket:") }
        break
      }
      usleep(10_000)
    }
    #expect(sockets == [], "the child holds the test process's sockets")
  }
}

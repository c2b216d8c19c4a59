import Glibc

/// The process's limit on open files (`RLIMIT_NOFILE`). Every upstream Do53 query has a socket of
/// its own, every DoT connection and DoQ session one, every client connection one: under
/// load Sotto holds thousands, past the soft limit of 1,024 that shells and systemd give by
/// default. Out of descriptors, a query fails and a probe's failure would be blamed on its server.
/// Unbound and PowerDNS Recursor raise the soft limit at start too.
public enum OpenFileLimit {
  /// Below this many open files (after `raise`) a busy resolver can run out: `serve` warns.
  public static let comfortable: UInt64 = 4096

  /// What `raise` found and did.
  public struct Change: Sendable, Equatable {
    /// The soft limit before and after, and the hard limit (`RLIM_INFINITY` as `UInt64.max`).
    public var before: UInt64
    public var after: UInt64
    public var hard: UInt64
  }

  /// Raises the soft limit to the hard limit, at most `cap` (the kernel's default `nr_open`); a
  /// soft limit already higher is left. Fails when the limits cannot be read or set.
  public static func raise(cap: UInt64 = 1 << 20) -> Result<Change, OpenFileLimitError> {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
      return .failure(OpenFileLimitError(call: "getrlimit", errno: errno))
    }
    let before = UInt64(limit.rlim_cur)
    let hard = UInt64(limit.rlim_max)
    let wanted = min(hard, cap)
    guard wanted > before else { return .success(Change(before: before, after: before, hard: hard)) }
    // An unlimited hard limit still stops at the kernel's fs.nr_open: then 65,536 is tried.
    for soft in [wanted, min(wanted, 65536)] where soft > before {
      limit.rlim_cur = rlim_t(soft)
      if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
        return .success(Change(before: before, after: soft, hard: hard))
      }
    }
    return .failure(OpenFileLimitError(call: "setrlimit", errno: errno))
  }
}

/// A failed `getrlimit` or `setrlimit` call.
public struct OpenFileLimitError: Error, Sendable, CustomStringConvertible {
  public var call: String
  public var errno: Int32
  public var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

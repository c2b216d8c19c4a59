#if canImport(Glibc)
  import CLinuxEpoll
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A cryptographically secure generator that draws from a process-wide pool of kernel
/// random bytes: one `getrandom(2)` fills 4 KiB. Swift's `SystemRandomNumberGenerator` makes a
/// system call for every number on Linux, which was 1.1 calls per cold resolution (query IDs,
/// server order) and 1.7 with encryption on (DoT message IDs too).
public struct PooledRandom: RandomNumberGenerator {
  /// A generator; all of them share the one pool.
  public init() {}

  /// The next 64 random bits from the pool, refilling it first when it is used up.
  public mutating func next() -> UInt64 { RandomPool.shared.next() }
}

/// The pool behind `PooledRandom`. A word is zeroed once handed out, so the pool never holds
/// a number that was already used.
final class RandomPool: Sendable {
  static let shared = RandomPool()

  /// Words per refill (4 KiB).
  static let capacity = 512

  private struct State {
    let words: UnsafeMutablePointer<UInt64>
    var used: Int
  }

  private let state: StateLock<State>

  init() {
    let words = UnsafeMutablePointer<UInt64>.allocate(capacity: Self.capacity)
    words.initialize(repeating: 0, count: Self.capacity)
    // Empty: the first `next` fills it.
    state = StateLock(State(words: words, used: Self.capacity))
  }

  deinit {
    state.withLock { $0.words.deallocate() }
  }

  func next() -> UInt64 {
    state.withLock { s in
      if s.used == Self.capacity {
        Self.fill(s.words, count: Self.capacity)
        s.used = 0
      }
      let value = s.words[s.used]
      s.words[s.used] = 0
      s.used += 1
      return value
    }
  }

  /// Fills `count` words from the kernel; if getrandom is unavailable, from the system generator.
  private static func fill(_ words: UnsafeMutablePointer<UInt64>, count: Int) {
    let total = count * MemoryLayout<UInt64>.size
    var done = 0
    #if canImport(Glibc)
      let raw = UnsafeMutableRawPointer(words)
      while done < total {
        let n = getrandom(raw + done, total - done, 0)
        if n > 0 {
          done += n
        } else if n < 0, errno == EINTR {
          continue
        } else {
          break
        }
      }
    #endif
    var system = SystemRandomNumberGenerator()
    for i in (done / MemoryLayout<UInt64>.size)..<count { words[i] = system.next() }
  }
}

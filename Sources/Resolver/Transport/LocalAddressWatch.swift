import COpenSSL
import Synchronization

/// Our source addresses towards global IPv4 and IPv6 (`RouteProbe.sourceAddresses`), looked at
/// again at most every `interval` seconds when asked, and numbered: `generation()` goes up each
/// time they change (a laptop on another network). An empty look (no descriptor, no route for a
/// moment) is no change. Shared by the DNS cookie jar and the encryption policy (T-6, T-37).
public final class LocalAddressWatch: Sendable {
  /// The addresses last seen; changed only together with `generationValue`, under this lock.
  private let seen = StateLock<[UInt8]>([])
  /// 0 until the first look that found an address.
  private let generationValue = Atomic<UInt64>(0)
  /// When the next look is due (`time`'s seconds, as a bit pattern): asking before then costs
  /// two atomic loads and no lock.
  private let nextLook = Atomic<UInt64>((-Double.infinity).bitPattern)
  let interval: Double
  let time: any TimeSource
  let look: @Sendable () -> [UInt8]

  /// Looks at most every `interval` seconds, with `look` (the kernel's route lookup by default).
  public init(
    interval: Double = 5, time: any TimeSource = TurnTimeSource(),
    look: @escaping @Sendable () -> [UInt8] = RouteProbe.sourceAddresses
  ) {
    self.interval = interval
    self.time = time
    self.look = look
  }

  /// The number of the addresses as of now (looking again first when a look is due); 0 while no
  /// look has found one.
  public func generation() -> UInt64 {
    let due = nextLook.load(ordering: .relaxed)
    let now = time.now()
    if now < Double(bitPattern: due) { return generationValue.load(ordering: .acquiring) }
    // One caller looks; the others go on with what was seen before.
    let claimed = nextLook.compareExchange(
      expected: due, desired: (now + interval).bitPattern, ordering: .relaxed
    ).exchanged
    if claimed {
      let address = look()
      if !address.isEmpty {
        seen.withLock { old in
          guard address != old else { return }
          old = address
          generationValue.add(1, ordering: .releasing)
        }
      }
    }
    return generationValue.load(ordering: .acquiring)
  }

  /// The addresses last seen and their number, read together.
  public func current() -> (generation: UInt64, address: [UInt8]) {
    _ = generation()
    return seen.withLock { ($0.isEmpty ? 0 : generationValue.load(ordering: .acquiring), $0) }
  }

  /// A short digest of the addresses as of now (nil while none was found), saved with the
  /// resumption tickets so that tickets from another network are not used after a restart (T-6).
  /// A digest rather than the address, though an IPv4 address is easily found from it.
  public func fingerprint() -> String? {
    let address = current().address
    guard !address.isEmpty else { return nil }
    let label = Array("sotto network".utf8)
    var out = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    _ = HMAC(EVP_sha256(), label, Int32(label.count), address, address.count, &out, &length)
    return out.prefix(8).map { b in b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }.joined()
  }
}

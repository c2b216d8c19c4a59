import COpenSSL
import Synchronization

/// Our source addresses towards global IPv4 and IPv6 (`RouteProbe.sourceAddresses`), looked at
/// again at most every `interval` seconds when asked, and numbered: `generation()` goes up each
/// time they change (a laptop on another network). Shared by the DNS cookie jar and the
/// encryption policy (T-6, T-37).
///
/// A look gives the IPv4 address (4 octets), the IPv6 one (16) or both (IPv4 first). Each family
/// is compared on its own: a family found with a different address is a change; one missing
/// from a look (no route for a moment, no descriptor for its socket) keeps its last address
/// until it has been missing from `missingLooks` looks in a row, and is then dropped, which is
/// a change; one seen for the first time (a late router advertisement) is taken without one.
/// (Two networks that give this machine the same addresses cannot be told apart.)
public final class LocalAddressWatch: Sendable {
  struct Seen {
    var address: [UInt8] = []
    /// Looks in a row without the IPv4 / IPv6 address kept in `address`.
    var missing4 = 0
    var missing6 = 0
  }
  /// The addresses last seen; changed only together with `generationValue`, under this lock.
  private let seen = StateLock(Seen())
  /// Held for a look and its taking, so that looks apply in the order they were made.
  private let looking = StateLock(())
  /// Looks in a row a family may be missing from before it counts as gone.
  static let missingLooks = 3
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
    if claimed { looking.withLock { _ in take(look()) } }
    return generationValue.load(ordering: .acquiring)
  }

  /// Looks now, whenever the last look was (before a resumption ticket is presented: a ticket
  /// from the old network must not go out in the seconds before the change is seen).
  public func refresh() -> UInt64 {
    nextLook.store((time.now() + interval).bitPattern, ordering: .relaxed)
    looking.withLock { _ in take(look()) }
    return generationValue.load(ordering: .acquiring)
  }

  /// The addresses last seen and their number, read together, without looking.
  public func lastSeen() -> (generation: UInt64, address: [UInt8]) {
    seen.withLock { ($0.address.isEmpty ? 0 : generationValue.load(ordering: .acquiring), $0.address) }
  }

  /// The addresses and their number as of now (looking first when a look is due).
  public func current() -> (generation: UInt64, address: [UInt8]) {
    _ = generation()
    return lastSeen()
  }

  /// Merges one look into what was seen (see the type's comment on families).
  private func take(_ address: [UInt8]) {
    let (v4, v6) = Self.families(address)
    guard v4 != nil || v6 != nil else { return }  // an empty look: no route, no socket
    seen.withLock { s in
      var (old4, old6) = Self.families(s.address)
      var changed = (v4 != nil && old4 != nil && v4 != old4) || (v6 != nil && old6 != nil && v6 != old6)
      s.missing4 = v4 == nil && old4 != nil ? s.missing4 + 1 : 0
      s.missing6 = v6 == nil && old6 != nil ? s.missing6 + 1 : 0
      if s.missing4 >= Self.missingLooks {
        (old4, s.missing4, changed) = (nil, 0, true)
      }
      if s.missing6 >= Self.missingLooks {
        (old6, s.missing6, changed) = (nil, 0, true)
      }
      let merged = (v4 ?? old4 ?? []) + (v6 ?? old6 ?? [])
      guard merged != s.address else { return }
      // Numbered: the first address (0 means none yet) and each change. A family seen for the
      // first time is kept without a new number.
      let first = s.address.isEmpty
      s.address = merged
      if first || changed { generationValue.add(1, ordering: .releasing) }
    }
  }

  /// The IPv4 and IPv6 parts of a look (by length: 4, 16 or 20 octets); others are one unknown part.
  static func families(_ address: [UInt8]) -> (v4: [UInt8]?, v6: [UInt8]?) {
    switch address.count {
    case 0: (nil, nil)
    case 4: (address, nil)
    case 16: (nil, address)
    case 20: (Array(address[..<4]), Array(address[4...]))
    default: (address, nil)
    }
  }

  /// A short digest of our addresses as of now (nil while none was found), saved with the
  /// resumption tickets so that tickets from another network are not used after a restart (T-6).
  public func fingerprint() -> String? {
    Self.fingerprint(of: current().address)
  }

  /// A digest of `address` (HMAC-SHA-256 under a fixed label, 8 octets in hex); nil for none. Not
  /// a secret: an IPv4 address is easily found from it.
  public static func fingerprint(of address: [UInt8]) -> String? {
    guard !address.isEmpty else { return nil }
    let label = Array("sotto network".utf8)
    var out = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    _ = HMAC(EVP_sha256(), label, Int32(label.count), address, address.count, &out, &length)
    return out.prefix(8).map { b in b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }.joined()
  }
}

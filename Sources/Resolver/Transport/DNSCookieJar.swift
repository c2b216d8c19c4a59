import COpenSSL

/// DNS Cookies for Do53 to authoritative servers (RFC 7873, R-35): an 8-octet client cookie per
/// server derived from our address, the server's and a secret (HMAC-SHA-256; the secret is
/// rotated every `rotation` seconds), the server cookie each server last sent (8–32 octets), and
/// the check that a reply echoes our client cookie. Our address is the machine's source address
/// towards global IPv4 and IPv6 as the shared `LocalAddressWatch` sees it (looked at again every
/// few seconds): once it changes (a laptop on another network), every client
/// cookie changes with it and the server cookies are forgotten (RFC 7873 §4.1). Queries sent
/// before the change is seen (up to that interval) still carry the old cookie.
public final class DNSCookieJar: Sendable {
  struct State {
    var secret: [UInt8]
    var rotatedAt: Double
    var serverCookies: [String: [UInt8]] = [:]
    /// Counts rotations, so a cookie computed under an older secret is never remembered.
    var generation = 0
    /// The option list `attach` puts on a query, per server: the client cookie under the current
    /// secret (an HMAC per query was ~3% of cold-resolution CPU) and the server's cookie, so a
    /// query allocates neither. Rebuilt from its client part when the server cookie changes,
    /// dropped when the server cookie is forgotten, emptied when the secret rotates.
    var optionLists: [String: [EDNSOption]] = [:]
    /// Our source addresses as the watch last gave them, and their number there.
    var localAddress: [UInt8] = []
    var addressGeneration: UInt64 = 0
  }

  /// Most servers whose cookie is remembered (the oldest half is dropped beyond it).
  static let maxServers = 10_000
  let rotation: Double
  let time: any TimeSource
  let state: StateLock<State>
  /// Our source address (a socket, connect and getsockname every few seconds: no packet).
  let watch: LocalAddressWatch

  /// A jar whose address watch looks every `addressCheckInterval` seconds with `localAddresses`.
  public convenience init(
    rotation: Double = 3_600, time: any TimeSource = TurnTimeSource(), addressCheckInterval: Double = 5,
    localAddresses: @escaping @Sendable () -> [UInt8] = RouteProbe.sourceAddresses
  ) {
    self.init(
      rotation: rotation, time: time,
      watch: LocalAddressWatch(interval: addressCheckInterval, time: time, look: localAddresses))
  }

  /// A jar that takes our address from `watch` (shared with the encryption policy).
  public init(rotation: Double = 3_600, time: any TimeSource = TurnTimeSource(), watch: LocalAddressWatch) {
    self.watch = watch
    // OpenSSL without atexit cleanup, as in DoTClientContext: with --no-encryption this jar is the
    // first OpenSSL user, and its default init freed OpenSSL's locks at exit while a Do53 query on
    // another thread was still in HMAC (SEGV in CRYPTO_THREAD_read_lock, TSan integration run).
    OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    self.rotation = rotation
    self.time = time
    state = StateLock(State(secret: Self.randomSecret(), rotatedAt: time.now()))
  }

  /// The COOKIE option for a query to `server`: our client cookie, plus its server cookie if known.
  func option(for server: String) -> EDNSOption { optionList(for: server)[0] }

  /// Adds (or replaces) the COOKIE option of an EDNS query to `server`; queries without EDNS are left alone.
  func attach(to query: inout Message, server: String) {
    guard query.edns != nil else { return }
    let list = optionList(for: server)
    if query.edns?.options.isEmpty == true {
      query.edns?.options = list  // shares the kept list: nothing copied
      return
    }
    query.edns?.options.removeAll { $0.code == EDNSOption.cookieCode }
    query.edns?.options.append(contentsOf: list)
  }

  /// `[option(for: server)]`, kept until the secret rotates or the server cookie is forgotten.
  func optionList(for server: String) -> [EDNSOption] {
    let now = time.now()
    // Lock-free until a look at our address is due (every few seconds).
    let addressGeneration = watch.generation()
    // One lock in the usual case: the secret's age, the address's number, the kept list.
    var (kept, secret, local, generation, addressChanged) = state.withLock {
      s -> ([EDNSOption]?, [UInt8], [UInt8], Int, Bool) in
      rotateIfDue(&s, now: now)
      let changed = s.addressGeneration != addressGeneration
      if !changed, let kept = s.optionLists[server] { return (kept, [], [], 0, false) }
      return (nil, s.secret, s.localAddress, s.generation, changed)
    }
    if addressChanged {
      let (number, address) = watch.current()
      noteLocalAddress(address, number: number)
      (kept, secret, local, generation) = state.withLock { s in
        (s.optionLists[server], s.secret, s.localAddress, s.generation)
      }
    }
    if let kept { return kept }
    let clientCookie = Self.clientCookie(secret, local, server)  // the HMAC, outside the lock
    return state.withLock { s in
      // The server cookie is read here, under the lock that `learn` changes it under.
      let list = [Self.cookieOption(clientCookie, s.serverCookies[server] ?? [])]
      // A list from a secret that rotated meanwhile serves this query only.
      guard s.generation == generation else { return list }
      if s.optionLists.count >= Self.maxServers { s.optionLists.removeAll() }
      s.optionLists[server] = list
      return list
    }
  }

  private static func cookieOption(_ client: [UInt8], _ server: some Collection<UInt8>) -> EDNSOption {
    EDNSOption(code: EDNSOption.cookieCode, data: client + server)
  }

  /// Takes `address` (the watch's `number`) as our source address; when it differs from the one
  /// before, every client cookie is computed anew and the server cookies (bound to the old ones)
  /// are forgotten. The watch never gives an empty look as a change.
  private func noteLocalAddress(_ address: [UInt8], number: UInt64) {
    state.withLock { s in
      guard number > s.addressGeneration else { return }
      s.addressGeneration = number
      guard address != s.localAddress else { return }
      s.localAddress = address
      s.generation += 1
      s.optionLists.removeAll()
      s.serverCookies.removeAll()
    }
  }

  /// Starts a new secret when the current one is `rotation` seconds old.
  private func rotateIfDue(_ s: inout State, now: Double) {
    guard now - s.rotatedAt >= rotation else { return }
    s.secret = Self.randomSecret()
    s.rotatedAt = now
    s.generation += 1
    s.optionLists.removeAll()
  }

  /// Remembers the server cookie of a reply whose client cookie is ours.
  func learn(from response: Message, server: String) {
    guard let data = Self.cookie(in: response), data.count >= 16, data.count <= 40 else { return }
    let serverCookie = data[8...]
    // Only for our current client cookie: a late reply to a query sent before our address
    // changed (or the secret rotated) must not put the old server cookie back.
    let (kept, secret, local, generation) = state.withLock { s -> ([UInt8]?, [UInt8], [UInt8], Int) in
      (s.optionLists[server]?.first.map { Array($0.data.prefix(8)) }, s.secret, s.localAddress, s.generation)
    }
    guard (kept ?? Self.clientCookie(secret, local, server)).elementsEqual(data.prefix(8)) else { return }
    state.withLock { s in
      guard s.generation == generation else { return }
      // The usual reply repeats the cookie already kept: nothing to copy or rebuild.
      if let known = s.serverCookies[server], known.elementsEqual(serverCookie) { return }
      if s.serverCookies.count >= Self.maxServers, s.serverCookies[server] == nil {
        for key in Array(s.serverCookies.keys.prefix(Self.maxServers / 2)) {
          s.serverCookies[key] = nil
          s.optionLists[key] = nil
        }
      }
      s.serverCookies[server] = Array(serverCookie)
      // The client cookie stays: the kept list gets the new server cookie without another HMAC.
      if let kept = s.optionLists[server]?.first {
        s.optionLists[server] = [Self.cookieOption(Array(kept.data.prefix(8)), serverCookie)]
      }
    }
  }

  /// Forgets `server`'s cookie: a UDP reply came without it and the server then answered over
  /// TCP without one too, so it has most likely stopped doing cookies.
  func forget(server: String) {
    state.withLock { s in
      guard s.serverCookies.removeValue(forKey: server) != nil else { return }
      s.optionLists[server] = nil
    }
  }

  /// The server cookie remembered for `server`.
  func serverCookie(for server: String) -> [UInt8]? { state.withLock { $0.serverCookies[server] } }

  /// The COOKIE option data of a message, if any.
  static func cookie(in message: Message) -> [UInt8]? {
    message.edns?.options.first { $0.code == EDNSOption.cookieCode }?.data
  }

  /// False when `response` carries a COOKIE whose client part differs from the one the query sent
  /// (`sent`, its COOKIE option), or carries none although the query held a server cookie, so the
  /// server is known to do cookies (RFC 7873 §5.3). A server never seen with cookies may answer
  /// without one.
  static func echoes(_ sent: [UInt8]?, in response: Message) -> Bool {
    guard let sent, sent.count >= 8 else { return true }
    guard let got = cookie(in: response) else { return sent.count == 8 }
    return got.count >= 8 && got.prefix(8).elementsEqual(sent.prefix(8))
  }

  /// HMAC-SHA-256(secret, our address ‖ server address), first 8 octets (RFC 7873 §4.1, R-35).
  static func clientCookie(_ secret: [UInt8], _ local: [UInt8], _ server: String) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    let input = local + Array(server.utf8)
    _ = secret.withUnsafeBufferPointer { key in
      HMAC(EVP_sha256(), key.baseAddress, Int32(key.count), input, input.count, &out, &length)
    }
    return Array(out.prefix(8))
  }

  static func randomSecret() -> [UInt8] { (0..<16).map { _ in UInt8.random(in: 0...255) } }
}

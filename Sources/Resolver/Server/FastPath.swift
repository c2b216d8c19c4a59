import NIOCore

/// The cached-answer fast path of the UDP listener: access control, counting and a packet-cache
/// lookup done on the receiving thread (`UDPSocketLoop` or the NIO event loop). A miss returns
/// what the full path needs to store its answer.
///
/// Rate limiting of clients belongs in `lookup` before the cache is consulted, so that hits are
/// limited like everything else.
///
/// A class, so the handler holds and passes one reference per datagram instead of copying four.
final class FastPath: Sendable {
  let cache: PacketCache
  let allowed: [CIDR]
  let counters: ListenerCounters
  let monitor: ResolverMonitor?

  init(cache: PacketCache, allowed: [CIDR], counters: ListenerCounters, monitor: ResolverMonitor?) {
    self.cache = cache
    self.allowed = allowed
    self.counters = counters
    self.monitor = monitor
  }

  enum Outcome {
    /// Answered from the packet cache: send this.
    case hit(ByteBuffer)
    /// Not answered: take the full path; `query` (when replayable) and `generation` go to `learn`.
    case miss(FastQuery?, generation: UInt64)
  }

  func lookup(_ data: ByteBuffer, from client: SocketAddress, allocator: ByteBufferAllocator)
    -> Outcome
  {
    let generation = cache.currentGeneration
    guard allowed.contains(where: { $0.contains(client) }) else {
      return .miss(nil, generation: generation)
    }
    guard let (response, hit) = cache.answer(data, allocator: allocator, generation: generation) else {
      return .miss(FastQuery(data), generation: generation)
    }
    counters.countFastQuery()
    monitor?.recordFastHit(client: client, name: hit.name, type: hit.qtype, rcode: hit.rcode)
    return .hit(response)
  }

  /// `lookup` for a query that came over TCP (`.tcp`) or DoT (`.tls`): a hit is the framed
  /// answer, counted as such. A stream answer is never truncated, so the full path's answer to a
  /// miss may be stored for UDP clients too, but not for a DoT query with EDNS options: that one
  /// takes the full path, which pads the answer when the query was padded (RFC 8467).
  func streamLookup(
    _ data: ByteBuffer, from client: SocketAddress, via transport: ClientTransport, allocator: ByteBufferAllocator
  ) -> Outcome {
    let generation = cache.currentGeneration
    guard allowed.contains(where: { $0.contains(client) }) else {
      return .miss(nil, generation: generation)
    }
    let plainEDNSOnly = transport.isEncrypted
    guard
      let (response, hit) = cache.answerFramed(
        data, allocator: allocator, generation: generation, plainEDNSOnly: plainEDNSOnly)
    else {
      let query = FastQuery(data).flatMap { plainEDNSOnly && $0.hasOptions ? nil : $0 }
      return .miss(query, generation: generation)
    }
    counters.countQuery(via: transport)
    monitor?.recordFastHit(client: client, name: hit.name, type: hit.qtype, rcode: hit.rcode)
    return .hit(response)
  }

  /// What `lookup(_:from:into:)` found.
  enum RawOutcome {
    /// Answered from the packet cache: the response fills the first `size` bytes of the buffer.
    case hit(size: Int)
    /// Not answered: as `Outcome.miss`.
    case miss(FastQuery?, generation: UInt64)
  }

  /// `lookup` for the UDP socket loop: the query and the response buffer are its reused memory.
  func lookup(_ query: UnsafeRawBufferPointer, from client: RawClientAddress, into out: UnsafeMutableRawBufferPointer)
    -> RawOutcome
  {
    let generation = cache.currentGeneration
    guard allowed.contains(where: { $0.contains(client) }) else {
      return .miss(nil, generation: generation)
    }
    guard let (size, hit) = cache.answer(query, into: out, generation: generation) else {
      return .miss(FastQuery(bytes: query), generation: generation)
    }
    counters.countFastQuery()
    monitor?.recordFastHit(client: client, name: hit.name, type: hit.qtype, rcode: hit.rcode)
    return .hit(size: size)
  }

  /// Stores the full path's answer to a replayable query.
  func learn(_ response: [UInt8], for query: FastQuery, generation: UInt64) {
    cache.insert(response: response, for: query, generation: generation)
  }
}

#if canImport(Glibc)
  import Glibc

  /// Reads a connected UDP socket's queued datagrams with one recvmmsg per batch into buffers the
  /// engine's DoQ sessions share (they all run on the engine thread). A reply read alone then
  /// costs one syscall: a batch shorter than `slots` leaves the socket empty, so no second read
  /// has to find that out (`EAGAIN`). Engine thread only.
  final class DatagramBatchReader: @unchecked Sendable {
    /// What one `read` found.
    enum Batch: Equatable {
      /// `count` datagrams are in slots 0..<count (`datagram(_:)`); `drained`: the socket had no
      /// more queued when they were read.
      case datagrams(count: Int, drained: Bool)
      /// Nothing was queued.
      case empty
      /// The read failed with this errno (ECONNREFUSED after an ICMP port unreachable, say).
      case failed(Int32)
    }

    /// Datagrams per read.
    let slots: Int
    /// Bytes per slot: the largest UDP payload (ngtcp2 accepts up to 65,527).
    static let slotSize = 65536

    private let calls: MMsgCalls?
    /// Allocated at the first read (a process without DoQ never needs them); freed in deinit.
    private var buffers: UnsafeMutableRawPointer?
    private var vectors: UnsafeMutablePointer<iovec>?
    private var messages: UnsafeMutablePointer<MMsgHdr>?

    /// `mmsg: false` reads one datagram per call with recv (what a system without recvmmsg gets;
    /// for tests).
    init(slots: Int = 4, mmsg: Bool = true) {
      self.slots = max(slots, 1)
      calls = mmsg ? MMsgCalls.shared : nil
    }

    deinit {
      buffers?.deallocate()
      vectors?.deallocate()
      messages?.deallocate()
    }

    /// Reads what `fd` has queued, up to `slots` datagrams; retries on EINTR.
    func read(_ fd: Int32) -> Batch {
      let (buffers, messages) = prepared()
      while true {
        let count: Int
        if let calls, let messages {
          count = Int(calls.recv(fd, UnsafeMutableRawPointer(messages), UInt32(slots), Int32(MSG_DONTWAIT), nil))
          if count > 0 { return .datagrams(count: count, drained: count < slots) }
        } else {
          // One datagram per call: whether more are queued is not known without another read.
          count = recv(fd, buffers, Self.slotSize, Int32(MSG_DONTWAIT))
          if count >= 0 {
            recvLength = count
            return .datagrams(count: 1, drained: false)
          }
        }
        let e = errno
        if count == 0 || e == EAGAIN || e == EWOULDBLOCK { return .empty }
        if e != EINTR { return .failed(e) }
      }
    }

    /// The `index`th datagram of the last `read` (valid until the next one).
    func datagram(_ index: Int) -> UnsafeRawBufferPointer {
      guard let buffers, index >= 0, index < (messages == nil ? 1 : slots) else {
        return UnsafeRawBufferPointer(start: nil, count: 0)
      }
      let length = messages.map { Int($0[index].len) } ?? recvLength
      return UnsafeRawBufferPointer(start: buffers + index * Self.slotSize, count: length)
    }

    /// The length `recv` returned (no recvmmsg).
    private var recvLength = 0

    private func prepared() -> (UnsafeMutableRawPointer, UnsafeMutablePointer<MMsgHdr>?) {
      if let buffers { return (buffers, messages) }
      let size = Self.slotSize
      let buffers = UnsafeMutableRawPointer.allocate(byteCount: (calls == nil ? 1 : slots) * size, alignment: 16)
      self.buffers = buffers
      guard calls != nil else { return (buffers, nil) }
      let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: slots)
      let messages = UnsafeMutablePointer<MMsgHdr>.allocate(capacity: slots)
      for i in 0..<slots {
        vectors[i] = iovec(iov_base: buffers + i * size, iov_len: size)
        var message = MMsgHdr()
        message.hdr.msg_iov = vectors + i
        message.hdr.msg_iovlen = 1
        messages[i] = message
      }
      self.vectors = vectors
      self.messages = messages
      return (buffers, messages)
    }
  }
#endif

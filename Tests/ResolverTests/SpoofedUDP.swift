#if canImport(Glibc)
  import Glibc

  /// Sends one UDP datagram with a forged IPv4 source through a raw socket (root only): for
  /// clients the kernel would never let a normal socket be, such as a broadcast address.
  func sendSpoofedUDP(
    from source: String, port sourcePort: UInt16, to destination: String, port: UInt16, payload: [UInt8]
  )
    throws
  {
    var src = in_addr()
    var dst = in_addr()
    guard inet_pton(AF_INET, source, &src) == 1, inet_pton(AF_INET, destination, &dst) == 1 else {
      throw SpoofError.address
    }
    let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW))
    guard fd >= 0 else { throw SpoofError.socket(errno) }
    defer { close(fd) }
    let udpLength = 8 + payload.count
    let total = 20 + udpLength
    var packet = [UInt8](repeating: 0, count: total)
    packet[0] = 0x45  // IPv4, 20-byte header
    packet[2] = UInt8(total >> 8)
    packet[3] = UInt8(total & 0xff)
    packet[8] = 64  // TTL
    packet[9] = UInt8(IPPROTO_UDP)  // the kernel fills in the header checksum
    withUnsafeBytes(of: src.s_addr) { packet.replaceSubrange(12..<16, with: $0) }
    withUnsafeBytes(of: dst.s_addr) { packet.replaceSubrange(16..<20, with: $0) }
    let udp: [UInt8] = [
      UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), UInt8(port >> 8), UInt8(port & 0xff),
      UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0,  // no UDP checksum (IPv4 allows it)
    ]
    packet.replaceSubrange(20..<28, with: udp)
    packet.replaceSubrange(28..<total, with: payload)
    var to = sockaddr_in()
    to.sin_family = sa_family_t(AF_INET)
    to.sin_addr = dst
    let sent = withUnsafePointer(to: &to) { pointer in
      pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
        sendto(fd, packet, packet.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard sent == total else { throw SpoofError.socket(errno) }
  }

  enum SpoofError: Error {
    case address
    case socket(Int32)
  }
#endif

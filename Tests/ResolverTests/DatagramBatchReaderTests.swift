import Glibc
import Testing

@testable import Resolver

/// The DoQ sessions' socket reads: every queued datagram whole and in order, a short batch known
/// to leave the socket empty, socket errors reported, on real loopback sockets.
@Suite struct DatagramBatchReaderTests {
  /// Datagrams of these lengths, each filled with its own index.
  static let lengths = [1, 1200, 20000, 7, 65000]

  static func queue(_ port: UInt16) throws {
    for (index, length) in lengths.enumerated() {
      try UDPExchangeEngineTests.send([UInt8](repeating: UInt8(index), count: length), to: port)
    }
  }

  /// Reads `fd` until empty: the datagrams' first bytes and lengths, and the batches' shapes.
  static func drain(_ reader: DatagramBatchReader, _ fd: Int32) -> (
    datagrams: [(first: UInt8, count: Int)], batches: [DatagramBatchReader.Batch]
  ) {
    var datagrams: [(first: UInt8, count: Int)] = []
    var batches: [DatagramBatchReader.Batch] = []
    for _ in 0..<20 {
      let batch = reader.read(fd)
      batches.append(batch)
      guard case .datagrams(let count, _) = batch else { break }
      for index in 0..<count {
        let bytes = reader.datagram(index)
        #expect(bytes.allSatisfy { $0 == bytes.first }, "datagram \(index) mixed with another")
        datagrams.append((bytes.first ?? 255, bytes.count))
      }
    }
    return (datagrams, batches)
  }

  @Test func batchesReadEveryDatagramWholeAndAShortOneEndsTheDrain() throws {
    let (fd, port) = try UDPExchangeEngineTests.boundUDPSocket()
    defer { close(fd) }
    try Self.queue(port)
    let reader = DatagramBatchReader(slots: 2)
    let (datagrams, batches) = Self.drain(reader, fd)
    #expect(datagrams.map(\.first) == [0, 1, 2, 3, 4])
    #expect(datagrams.map(\.count) == Self.lengths)
    // Two full batches, then a short one that says the socket is empty: no read finds that out.
    #expect(
      batches == [
        .datagrams(count: 2, drained: false), .datagrams(count: 2, drained: false),
        .datagrams(count: 1, drained: true), .empty,
      ])
    #expect(reader.read(fd) == .empty)
  }

  @Test func withoutRecvmmsgItReadsOneAtATimeUntilEmpty() throws {
    let (fd, port) = try UDPExchangeEngineTests.boundUDPSocket()
    defer { close(fd) }
    try Self.queue(port)
    let reader = DatagramBatchReader(slots: 4, mmsg: false)
    let (datagrams, batches) = Self.drain(reader, fd)
    #expect(datagrams.map(\.count) == Self.lengths)
    #expect(batches.count == Self.lengths.count + 1)
    #expect(batches.last == .empty)
    #expect(batches.dropLast().allSatisfy { $0 == .datagrams(count: 1, drained: false) })
  }

  @Test func aRefusedPortIsReportedAsTheSocketsError() throws {
    // A port nobody listens on: the connected socket gets the ICMP port unreachable as ECONNREFUSED.
    let (closed, port) = try UDPExchangeEngineTests.boundUDPSocket()
    close(closed)
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = UDPExchangeEngineTests.loopback(port)
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    try #require(connected == 0)
    try #require(Glibc.send(fd, [1, 2, 3], 3, 0) == 3)
    let reader = DatagramBatchReader(slots: 2)
    var batch = reader.read(fd)
    for _ in 0..<100 where batch == .empty {  // the ICMP error is queued asynchronously
      usleep(1000)
      batch = reader.read(fd)
    }
    #expect(batch == .failed(ECONNREFUSED))
    #expect(reader.read(fd) == .empty)
  }
}

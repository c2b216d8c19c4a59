import CDoQServer
import Logging
import NIOCore
import NIOPosix

/// Serves local clients over UDP and TCP (RFC 7766 framing), and over DNS-over-TLS and
/// DNS-over-QUIC where asked, from any `QueryResolving`.
public final class Listener: Sendable {
  private let configuration: ListenerConfiguration
  private let group: any EventLoopGroup
  private let logger: Logger
  private let counters: ListenerCounters
  private let processor: QueryProcessor
  private let connections: ConnectionTracker
  /// Connections per client (`ClientKey`), TCP, DoT and DoQ together.
  private let perClient: ClientConnectionCap
  /// Client TCP connections open now (admitted, not yet closed).
  var openTCPConnections: Int { connections.count }
  private let servers = StateLock<[any Channel]>([])
  private let boundTLS = StateLock<[SocketAddress]>([])
  private let boundQUIC = StateLock<[SocketAddress]>([])
  /// The DoQ channels (also in `servers`): their connections are closed first on `stop()`.
  private let quicChannels = StateLock<[any Channel]>([])
  #if canImport(Glibc)
    private let udpLoops = StateLock<[UDPSocketLoop]>([])
  #endif
  private let fastPath: FastPath?
  /// The DoT and DoQ certificate new connections get: `configuration.tls` until `reloadTLS`.
  private let identity: StateLock<TLSServerContext?>

  /// A listener for `configuration`; nothing is bound until `start()`.
  /// `monitor`, when given, records every resolved client query (dashboard, `sotto ctl`).
  /// `packetCache`, when given, answers repeated UDP questions before any task (UDP is then served by
  /// `UDPSocketLoop` where recvmmsg/sendmmsg exist).
  public init(
    resolver: any QueryResolving, configuration: ListenerConfiguration, group: any EventLoopGroup, logger: Logger,
    monitor: ResolverMonitor? = nil, packetCache: PacketCache? = nil
  ) {
    self.configuration = configuration
    self.group = group
    self.logger = logger
    let counters = monitor?.listenerCounters ?? ListenerCounters()
    self.counters = counters
    var processor = QueryProcessor(
      resolver: resolver, allowed: configuration.allowed, counters: counters, logger: logger, monitor: monitor)
    processor.maxResolutions = configuration.maxResolutions
    if configuration.clientRateLimit > 0 {
      processor.rateLimiter = ClientRateLimiter(
        rate: configuration.clientRateLimit, ipv6Prefix: configuration.clientIPv6Prefix)
    }
    self.processor = processor
    let perClient = ClientConnectionCap(
      limit: configuration.maxConnectionsPerClient, ipv6Prefix: configuration.clientIPv6Prefix)
    self.perClient = perClient
    self.connections = ConnectionTracker(limit: configuration.maxTCPConnections, perClient: perClient)
    self.identity = StateLock(configuration.tls)
    self.fastPath = packetCache.map {
      FastPath(cache: $0, allowed: configuration.allowed, counters: counters, monitor: monitor)
    }
  }

  /// Current counters.
  public var statistics: ListenerStatistics { counters.snapshot }

  /// Binds UDP and TCP on every configured address, then DoT on every TLS address and DoQ on every
  /// QUIC address, and returns the UDP/TCP addresses (one per configured address; UDP and TCP share
  /// the port, also when port 0 was asked for). The others are in `tlsAddresses` and `quicAddresses`.
  public func start() async throws -> [SocketAddress] {
    var bound: [SocketAddress] = []
    do {
      for address in configuration.addresses {
        bound.append(try await bindPair(address))
      }
      if !configuration.tlsAddresses.isEmpty {
        guard configuration.tls != nil else { throw ListenerError.noTLSIdentity }
        for address in configuration.tlsAddresses {
          let channel = try await bindStream(address, tls: true)
          servers.withLock { $0.append(channel) }
          guard let local = channel.localAddress else { throw ListenerError.noAddress }
          boundTLS.withLock { $0.append(local) }
        }
      }
      if !configuration.quicAddresses.isEmpty {
        guard let tls = configuration.tls else { throw ListenerError.noTLSIdentity }
        for address in configuration.quicAddresses {
          let channel = try await bindQUIC(address, tls: tls)
          servers.withLock { $0.append(channel) }
          quicChannels.withLock { $0.append(channel) }
          guard let local = channel.localAddress else { throw ListenerError.noAddress }
          boundQUIC.withLock { $0.append(local) }
        }
      }
    } catch {
      await stop()
      throw error
    }
    logger.info("listening", metadata: ["addresses": "\(bound.map { "\($0)" }.joined(separator: " "))"])
    return bound
  }

  /// The bound DoT addresses (after `start()`).
  public var tlsAddresses: [SocketAddress] { boundTLS.withLock { $0 } }

  /// Gives DoT and DoQ connections that start from now on `tls` (a renewed certificate, on
  /// SIGHUP); open connections keep the one they started with. All or nothing: the DoQ engines
  /// take it first, and when one refuses it (GnuTLS may reject what OpenSSL took) those that
  /// took it get the old one back, the DoT listeners never see it, and this throws. One reload
  /// at a time (the caller's).
  public func reloadTLS(_ tls: TLSServerContext) async throws {
    let old = identity.withLock { $0 }
    var updated: [any Channel] = []
    do {
      for channel in quicChannels.withLock({ $0 }) {
        try await Self.setIdentity(tls, on: channel)
        updated.append(channel)
      }
    } catch {
      if let old { for channel in updated { try? await Self.setIdentity(old, on: channel) } }
      throw error
    }
    // DoT clients resume across the reload: the new context issues and accepts the old tickets.
    if let old, !tls.adoptTicketKeys(from: old) {
      logger.notice("DoT session tickets from before the certificate reload will not resume")
    }
    identity.withLock { $0 = tls }
  }

  private static func setIdentity(_ tls: TLSServerContext, on channel: any Channel) async throws {
    try await channel.eventLoop.submit {
      try channel.pipeline.syncOperations.handler(type: DoQServerDriver.self).setIdentity(
        certificatePEM: tls.certificatePEM, privateKeyPEM: tls.privateKeyPEM)
    }.get()
  }

  /// The bound DoQ addresses (after `start()`).
  public var quicAddresses: [SocketAddress] { boundQUIC.withLock { $0 } }

  /// Closes the listening sockets and every open client connection (DoQ clients get a
  /// CONNECTION_CLOSE first).
  public func stop() async {
    for channel in quicChannels.withLock({ $0 }) {
      try? await channel.eventLoop.submit {
        try channel.pipeline.syncOperations.handler(type: DoQServerDriver.self).closeAll()
      }.get()
    }
    quicChannels.withLock { $0.removeAll() }
    let channels =
      servers.withLock { open in
        defer { open.removeAll() }
        return open
      } + connections.takeAll()
    for channel in channels {
      try? await channel.close()
    }
    #if canImport(Glibc)
      let loops = udpLoops.withLock { open in
        defer { open.removeAll() }
        return open
      }
      for loop in loops {
        await loop.stop()
      }
    #endif
  }

  // MARK: - Binding

  /// TCP first, then UDP on the port TCP got; with port 0 a few ports are tried if UDP's is taken.
  private func bindPair(_ address: SocketAddress) async throws -> SocketAddress {
    let attempts = address.port == 0 ? 5 : 1
    var lastError: any Error = ListenerError.noAddress
    for _ in 0..<attempts {
      let tcp = try await bindStream(address, tls: false)
      guard let local = tcp.localAddress else {
        try? await tcp.close()
        throw ListenerError.noAddress
      }
      do {
        #if canImport(Glibc)
          // UDP is served by the socket loop, with or without the packet cache (NIO's channel where
          // the loop is unavailable: NIO closes the channel on a send the kernel refuses, EACCES
          // say, where the loop counts it in sendFailures and serves on).
          if let loop = try UDPSocketLoop.start(
            local, processor: processor, fastPath: fastPath, answerDeadline: configuration.answerDeadline)
          {
            servers.withLock { $0.append(tcp) }
            udpLoops.withLock { $0.append(loop) }
            return local
          }
        #endif
        let udp = try await bindUDP(local)
        servers.withLock { $0 += [tcp, udp] }
        return local
      } catch {
        lastError = error
        try? await tcp.close()
      }
    }
    throw lastError
  }

  /// A TCP listener; with `tls`, every connection speaks DoT (OE-4) with the identity of the
  /// moment it is accepted, under the same caps.
  private func bindStream(_ address: SocketAddress, tls: Bool) async throws -> any Channel {
    let identity = self.identity
    let processor = self.processor
    let connections = self.connections
    let counters = self.counters
    let logger = self.logger
    let idleTimeout = configuration.tcpIdleTimeout
    let queryLimit = configuration.tcpQueriesPerConnection
    let answerDeadline = configuration.answerWatch
    let fastPath = self.fastPath
    return try await ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.allowRemoteHalfClosure, value: true)
      // Answers go out as they complete: with Nagle one answer would wait for the client's
      // delayed ACK of the previous one (and a DoT answer for the ACK of the session tickets).
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        if case .failure(let refusal) = connections.admit(channel) {
          let perClient = refusal == .clientCap
          counters.update {
            $0.tcpConnectionsRejected += 1
            if perClient { $0.clientConnectionCapClosed += 1 }
          }
          logger.debug(
            perClient ? "connection limit per client reached" : "TCP connection limit reached",
            metadata: ["client": "\(channel.remoteAddress.map { "\($0)" } ?? "?")"])
          return channel.close()
        }
        return channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          if tls {
            guard let current = identity.withLock({ $0 }) else { throw ListenerError.noTLSIdentity }
            try sync.addHandler(TLSServerHandler(tls: current, counters: counters))
          }
          try sync.addHandlers([
            ByteToMessageHandler(TCPFrameDecoder()),
            // After the framer: only whole queries count as activity, so a client that trickles
            // a byte (or an empty TLS record) now and then does not hold its slot for ever.
            IdleStateHandler(readTimeout: idleTimeout),
            TCPQueryHandler(
              processor: processor, counters: counters, queryLimit: queryLimit, transport: tls ? .tls : .tcp,
              answerDeadline: answerDeadline, fastPath: fastPath),
          ])
        }
      }
      .bind(to: address).get()
  }

  /// A DoQ listener (OE-4): the C engine on a datagram channel, under the TCP caps and timeouts.
  private func bindQUIC(_ address: SocketAddress, tls: TLSServerContext) async throws -> any Channel {
    let processor = self.processor
    let counters = self.counters
    let idleTimeout = configuration.tcpIdleTimeout
    let maxConnections = configuration.maxTCPConnections
    let perClient = self.perClient
    let answerDeadline = configuration.answerWatch
    let queryLimit = configuration.tcpQueriesPerConnection
    // On 0.0.0.0 or ::, the driver answers each client from the address its datagrams were sent
    // to (IP_PKTINFO, IPV6_PKTINFO): NIO reads that, but cannot send from a chosen address, so the
    // socket is made here and the driver sends on it with sendmsg.
    let wildcardIP = address.ipAddress.flatMap { $0 == "0.0.0.0" || $0 == "::" ? $0 : nil }
    let wildcardFD: Int32?
    let channel: any Channel
    if let wildcardIP, let port = address.port {
      var err = [CChar](repeating: 0, count: 256)
      let fd = doqs_bind_udp(wildcardIP, UInt16(clamping: port), 0, &err, err.count)
      guard fd >= 0 else {
        throw DoQServerError(
          message: String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
      }
      channel = try await DatagramBootstrap(group: group).withBoundSocket(fd).get()
      wildcardFD = fd
    } else {
      channel = try await DatagramBootstrap(group: group).bindClosingOnFailure(to: address)
      wildcardFD = nil
    }
    do {
      guard let bound = channel.localAddress, let ip = bound.ipAddress, let port = bound.port else {
        throw ListenerError.noAddress
      }
      if wildcardFD != nil { try await channel.setOption(.receivePacketInfo, value: true).get() }
      try await channel.eventLoop.submit {
        let service = DoQQueryService(
          processor: processor, counters: counters, answerDeadline: answerDeadline, queryLimit: queryLimit,
          perClient: perClient)
        let driver = try DoQServerDriver(
          certificatePEM: tls.certificatePEM, privateKeyPEM: tls.privateKeyPEM, ip: ip, port: port,
          handshakeTimeout: min(idleTimeout, .seconds(5)), idleTimeout: idleTimeout, maxConnections: maxConnections,
          maxMessage: ListenerConfiguration.maxDoQQuerySize,
          handle: service.handle)
        driver.afterSend = service.copyEngineCounters
        if let wildcardFD { driver.answerFromDestinations(socket: wildcardFD) }
        try channel.pipeline.syncOperations.addHandler(driver, name: DoQServerDriver.name)
      }.get()
      return channel
    } catch {
      try? await channel.close()
      throw error
    }
  }

  private func bindUDP(_ address: SocketAddress) async throws -> any Channel {
    let processor = self.processor
    let fastPath = self.fastPath
    // Vector reads (recvmmsg) of up to 16 datagrams of up to 4 KiB each; the writes of one read
    // batch leave with one flush (sendmmsg).
    return try await DatagramBootstrap(group: group)
      .channelOption(.datagramVectorReadMessageCount, value: 16)
      .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 4096))
      .bindClosingOnFailure(to: address) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(UDPQueryHandler(processor: processor, fastPath: fastPath))
        }
      }
  }
}

/// Why the listener could not start.
public enum ListenerError: Error, Sendable {
  /// A bound socket reported no local address.
  case noAddress
  /// DoT addresses were configured without a certificate and key.
  case noTLSIdentity
}

/// Settings turned into the resolver core's configuration.
extension ResolverConfiguration {
  /// The configuration for `settings` (root hints stay the built-in ones; the caller reads a hints
  /// file). Host routes are not probed here.
  public init(settings s: Settings) {
    self.init()
    allowLoopback = s.bool(.allowLoopback)
    do53Port = s.int(.do53Port)
    useIPv4 = s.bool(.ipv4)
    useIPv6 = s.bool(.ipv6)
    qnameMinimisation = s.bool(.qnameMinimisation)
    qnameMinimisationStrict = s.string(.qnameMinimisationMode) == "strict"
    relaxedGlue = s.string(.glue) == "relaxed"
    cache.maxEntries = s.int(.cacheSize)
    cache.minTTL = UInt32(clamping: s.int(.minTTL))
    cache.maxTTL = UInt32(clamping: s.int(.maxTTL))
    cache.maxNegativeTTL = UInt32(clamping: s.int(.maxNegativeTTL))
    cache.maxStale = UInt32(clamping: s.int(.maxStale))
    queryTimeoutMs = Double(s.int(.queryTimeout))
    queryRetries = s.int(.queryRetries)
    unresponsiveAfter = s.int(.unresponsiveAfter)
    limits.deadline = s.number(.resolutionDeadline)
    ednsBufferSize = UInt16(clamping: s.int(.ednsBufferSize))
    encryption.enabled = s.bool(.encryption)
    encryption.port = s.int(.encryptedPort)
    encryption.timeout = s.number(.probeTimeout)
    encryption.damping = s.number(.damping)
    encryption.persistence = s.number(.persistence)
    encryption.maxConcurrentProbes = s.int(.maxProbes)
    encryption.maxSessions = s.int(.maxSessions)
    encryption.idleTimeout = s.number(.sessionIdleTimeout)
    encryption.dotConnections = s.int(.dotConnections)
    encryption.dotConnectionsMinRTTMs = s.number(.dotConnectionsMinRTT)
    encryption.extraCAFile = s.string(.tlsCAFile)
    var transports: [EncryptedTransport] = s.string(.prefer) == "dot" ? [.dot, .doq] : [.doq, .dot]
    if !s.bool(.dot) { transports.removeAll { $0 == .dot } }
    if !s.bool(.doq) { transports.removeAll { $0 == .doq } }
    encryption.transports = transports
    if transports.isEmpty { encryption.enabled = false }
  }
}

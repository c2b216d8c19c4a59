/// Whether the encrypted connection opened in the current task is a probe that no query waits
/// for (OE-10: probing never slows a resolution). Its handshake then runs on the engine thread at
/// low priority (`LowPriorityLane`) until it completes. Set by the RFC 9539 policy around
/// `EncryptedConnector.connect`; read by `DoTConnection.connect` and `DoQConnection.connect`.
enum HandshakePriority {
  @TaskLocal static var low = false
}

import ArgumentParser
import Dispatch
import Logging
import NIOCore
import NIOPosix
import Resolver

/// The resolver with its client listener and optional control socket, as `serve` and `top` run it.
struct RunningResolver {
  let stack: ResolverStack
  let listener: Listener
  let control: ControlServer?
  let bound: [SocketAddress]

  /// Builds the resolver from `settings`, starts listening and opens the control socket.
  static func start(_ settings: Settings, logger: Logger) async throws -> RunningResolver {
    raiseOpenFileLimit(logger: logger)
    let listenerConfig = try ListenerOptions.configuration(settings)
    let group = MultiThreadedEventLoopGroup.singleton
    let stack = try ResolverOptions.stack(settings, group: group, logger: logger)
    let packetCache = PacketCache(
      capacity: ListenerOptions.packetCacheEntries(settings), invalidatedBy: stack.resolver.cache)
    let listener = Listener(
      resolver: stack.resolver, configuration: listenerConfig, group: group, logger: logger, monitor: stack.monitor,
      packetCache: packetCache)
    let bound: [SocketAddress]
    do {
      bound = try await listener.start()
    } catch {
      let addresses =
        settings.strings(.listen) + settings.strings(.listenTLS).map { "\($0) (DoT)" }
        + settings.strings(.listenQUIC).map { "\($0) (DoQ)" }
      throw ValidationError("cannot listen on \(addresses.joined(separator: ", ")): \(error)")
    }
    let tlsBound = listener.tlsAddresses
    let quicBound = listener.quicAddresses
    stack.monitor.setListeners(
      bound.map(Top.describe) + tlsBound.map { "dot " + Top.describe($0) }
        + quicBound.map { "doq " + Top.describe($0) })
    if tlsBound.isEmpty && quicBound.isEmpty && settings.string(.tlsCertificate) != nil {
      logger.warning("tls-certificate and tls-key are not used: no listen-tls or listen-quic address")
    }
    if let tls = listenerConfig.tls, !(tlsBound.isEmpty && quicBound.isEmpty) {
      let addresses = (tlsBound.map { "DoT " + Top.describe($0) } + quicBound.map { "DoQ " + Top.describe($0) })
        .joined(separator: ", ")
      if settings.string(.tlsCertificate) == nil {
        // Opportunistic clients accept it; clients that authenticate need the pin (RFC 7858 §4.2).
        logger.warning(
          "encrypted DNS for clients on \(addresses) with a self-signed certificate made at start (give --tls-certificate and --tls-key for one clients can verify); SPKI pin sha256/\(tls.spkiPin)"
        )
      } else {
        logger.notice("encrypted DNS for clients on \(addresses); SPKI pin sha256/\(tls.spkiPin)")
      }
    }
    if let exposed = ListenerConfiguration.cleartextOnlyBeyondLoopback(listenerConfig) {
      // OE-4 (RFC 9539 §4.4): encrypt towards clients unless serving only this host.
      logger.notice(
        "clients on \(Top.describe(exposed)) can reach Sotto only in cleartext: add --listen-tls or --listen-quic to offer them encrypted DNS (RFC 9539 §4.4)"
      )
    }
    let control = try await Top.startControl(settings.string(.control), stack: stack, group: group, logger: logger)
    return RunningResolver(stack: stack, listener: listener, control: control, bound: bound)
  }

  /// SIGHUP: reads the operator's certificate and key files again (a renewed certificate) and
  /// gives them to DoT and DoQ connections that start from now on; open ones keep theirs. A file
  /// that cannot be read or used is logged as an error and the certificate in use is kept. A
  /// self-signed certificate made at start has nothing to reload.
  func reloadTLS(_ settings: Settings, logger: Logger) async {
    guard !(listener.tlsAddresses.isEmpty && listener.quicAddresses.isEmpty),
      let certificate = settings.string(.tlsCertificate), let key = settings.string(.tlsKey)
    else { return }
    do {
      let tls = try TLSServerContext(certificateFile: certificate, keyFile: key)
      try await listener.reloadTLS(tls)
      logger.notice("TLS certificate reloaded from \(certificate); SPKI pin sha256/\(tls.spkiPin)")
    } catch {
      logger.error("TLS certificate not reloaded (SIGHUP), the one in use is kept: \(error)")
    }
  }

  /// `reloadTLS`, waited for: the SIGHUP queue runs one reload at a time.
  func reloadTLSWaiting(_ settings: Settings, logger: Logger) {
    let done = DispatchSemaphore(value: 0)
    Task {
      await reloadTLS(settings, logger: logger)
      done.signal()
    }
    done.wait()
  }

  /// Raises the soft limit on open files to the hard limit (`OpenFileLimit`) and warns when even
  /// that is too low for a busy resolver.
  static func raiseOpenFileLimit(logger: Logger) {
    switch OpenFileLimit.raise() {
    case .failure(let error):
      logger.warning("cannot raise the limit on open files: \(error)")
    case .success(let change):
      if change.after > change.before {
        logger.info("open files: soft limit raised from \(change.before) to \(change.after)")
      }
      if change.after < OpenFileLimit.comfortable {
        logger.warning(
          "at most \(change.after) open files (hard limit \(change.hard)): under load, upstream queries and client connections can fail for lack of file descriptors; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) to \(OpenFileLimit.comfortable) or more"
        )
      }
    }
  }

  /// Stops the control socket and the listener, closes encrypted sessions and saves state. The event
  /// loops are left running: a probe may still be using them, and the process exits next.
  func stop() async {
    await control?.stop()
    await listener.stop()
    await stack.shutdown(probeWait: 0)
  }
}

import NIOCore

/// Runs `send` on `loop` and waits for the response it promises: one task queued on the loop
/// (none when already on it) and one callback, instead of `flatSubmit` (a promise and a cascade)
/// followed by `get()` (a checked continuation and another callback). Used by the DoT and DoQ
/// connections, whose sessions live on their channel's loop while resolutions run elsewhere.
func exchangeOnLoop(
  _ loop: any EventLoop, _ send: @escaping @Sendable () -> EventLoopFuture<Message>
) async throws(TransportError) -> Message {
  let result = await withUnsafeContinuation {
    (continuation: UnsafeContinuation<Result<Message, any Error>, Never>) in
    if loop.inEventLoop {
      send().whenComplete { continuation.resume(returning: $0) }
    } else {
      loop.execute { send().whenComplete { continuation.resume(returning: $0) } }
    }
  }
  switch result {
  case .success(let message): return message
  case .failure(let error as TransportError): throw error
  case .failure(let error): throw .io("\(error)")
  }
}

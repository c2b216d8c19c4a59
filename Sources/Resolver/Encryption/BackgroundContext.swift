/// A TLS client context built when the first session needs it, not at start-up: loading the
/// system trust stores takes tens of milliseconds of CPU (OpenSSL's bundle about 45 ms, GnuTLS's
/// about 20 ms here), and the first client answer should not wait for that. The first probe does
/// (probing never blocks resolution, OE-10); later sessions reuse the context.
final class BackgroundContext<Context: Sendable>: Sendable {
  private let make: @Sendable () -> Result<Context, EncryptedFailure>
  private let building = StateLock<Task<Result<Context, EncryptedFailure>, Never>?>(nil)

  /// `make` runs once, on the global executor, when `get` is first called.
  init(_ make: @escaping @Sendable () -> Result<Context, EncryptedFailure>) {
    self.make = make
  }

  /// A context that is ready already.
  convenience init(ready context: Context) {
    self.init { .success(context) }
  }

  /// The context, or the error building it gave.
  func get() async throws(EncryptedFailure) -> Context {
    let make = self.make
    let task = building.withLock { task in
      if let task { return task }
      let started = Task.detached(priority: .userInitiated) { make() }
      task = started
      return started
    }
    return try await task.value.get()
  }
}

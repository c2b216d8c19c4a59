import Resolver

/// The tests' `Mutex` is Sotto's `StateLock` (a pthread mutex), not the Synchronization module's:
/// ThreadSanitizer cannot see that one on Linux (`Tests/Sanitizers/tsan_mutex_repro.swift`), so
/// two accesses inside `withLock` of one test fake read as a race and fail `make test-tsan`
/// (seen once, 2026-12-05: UnresponsiveServerTests' fake exchanger, called from a resolution on
/// the engine thread and from a probe on a pool thread). A declaration of this module shadows the
/// imported one.
typealias Mutex<Value> = StateLock<Value>

import Resolver

/// The tests' `Mutex` is Sotto's `StateLock` (a pthread mutex): ThreadSanitizer cannot see the
/// Synchronization module's on Linux (`Tests/Sanitizers/tsan_mutex_repro.swift`, and
/// `Tests/ResolverTests/TestLock.swift`). A declaration of this module shadows the imported one.
typealias Mutex<Value> = StateLock<Value>

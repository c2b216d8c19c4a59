import Foundation

/// Runs `body` on a thread of its own and suspends until it returns. For test work that blocks
/// (child processes) or computes for seconds: on the cooperative pool, which has one thread per
/// core (two on CI), it would hold up every other test's task, and tests that time what they
/// await would see that stall as their own (two did under ASan on CI).
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    Thread { continuation.resume(with: Result { try body() }) }.start()
  }
}

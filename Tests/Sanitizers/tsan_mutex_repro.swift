// Why Sotto does not use Synchronization.Mutex: ThreadSanitizer cannot see it (Swift 6.3.1, Linux).
//
// Four threads add to a counter that is only touched inside `Mutex.withLock`. The total is right
// (80000), yet ThreadSanitizer reports a "Swift access race" on the counter: the Synchronization
// module's Mutex (a futex lock in the precompiled, uninstrumented runtime) creates no
// happens-before edge that TSan can see. Every race reported against `sotto` in the integration
// run had both accesses inside `withLock` closures of the same Mutex (EncryptionPolicy.state,
// ResolverMonitor.state), i.e. this pattern. Sotto's locks are now StateLock (a pthread mutex)
// for this reason: Sources/Resolver/Concurrency/StateLock.swift.
//
//   swiftc -sanitize=thread -g Tests/Sanitizers/tsan_mutex_repro.swift -o /tmp/tsan_mutex_repro
//   TSAN_OPTIONS=halt_on_error=0 /tmp/tsan_mutex_repro    # prints 80000 and a race report
import Foundation
import Synchronization

struct Counter { var n = 0 }
final class Box: Sendable { let m = Mutex(Counter()) }

let box = Box()
let group = DispatchGroup()
for _ in 0..<4 {
  DispatchQueue.global().async(group: group) {
    for _ in 0..<20000 { box.m.withLock { $0.n += 1 } }
  }
}
group.wait()
print(box.m.withLock { $0.n })

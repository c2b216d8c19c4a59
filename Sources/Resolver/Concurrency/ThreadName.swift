import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Names the calling thread as `top -H`, `perf` and `/proc/PID/task/*/comm` show it (at most 15
/// bytes on Linux). Set with `pthread_setname_np` on the thread itself: Foundation's `Thread.name`
/// did not always reach the kernel (a dashboard thread kept its starter's name under ASan).
public func nameCurrentThread(_ name: String) {
  Thread.current.name = name
  #if canImport(Glibc)
    if let set = ThreadNaming.setName { _ = set(pthread_self(), name) }
  #endif
}

#if canImport(Glibc)
  /// `pthread_setname_np`, looked up in the C library (Glibc's Swift module does not export it).
  enum ThreadNaming {
    typealias SetName = @convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32
    static let setName: SetName? = {
      guard let handle = dlopen(nil, RTLD_NOW), let f = dlsym(handle, "pthread_setname_np") else {
        return nil
      }
      return unsafeBitCast(f, to: SetName.self)
    }()
  }
#endif

/// Waits (up to 5 s) until `condition` holds, for work a test started in the background;
/// whether it came to hold.
func eventually(_ condition: () -> Bool) async -> Bool {
  for _ in 0..<500 {
    if condition() { return true }
    try? await Task.sleep(for: .milliseconds(10))
  }
  return condition()
}

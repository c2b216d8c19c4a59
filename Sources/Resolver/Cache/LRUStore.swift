/// A dictionary with a capacity that evicts its least recently used entry in O(1).
///
/// Recency order is an intrusive doubly-linked list threaded by slot index through two arrays of
/// links, kept apart from the entries: marking an entry used rewrites a few integers and never
/// copies (retains and releases) a key or value. Freed slots are reused. Not thread-safe:
/// `DNSCache` keeps it behind a mutex.
struct LRUStore<Key: Hashable, Value> {
  private struct Entry {
    var key: Key
    var value: Value
  }

  /// The entry in each slot; nil for a free slot.
  private var entries: [Entry?] = []
  /// Per slot: the slot towards the most recently used end (-1 at the head).
  private var prevs: [Int] = []
  /// Per slot: the slot towards the least recently used end (-1 at the tail).
  private var nexts: [Int] = []
  private var freeSlots: [Int] = []
  private var index: [Key: Int] = [:]
  private var head = -1  // most recently used
  private var tail = -1  // least recently used

  /// Most entries held; inserting beyond it evicts the least recently used one.
  let capacity: Int

  init(capacity: Int) { self.capacity = max(0, capacity) }

  var count: Int { index.count }
  var keys: Dictionary<Key, Int>.Keys { index.keys }

  /// The keys from most to least recently used (for tests and diagnostics).
  var keysByRecency: [Key] {
    var out: [Key] = []
    var i = head
    while i >= 0, let entry = entries[i] {
      out.append(entry.key)
      i = nexts[i]
    }
    return out
  }

  /// The value for `key` without changing its recency.
  func peek(_ key: Key) -> Value? {
    guard let i = index[key] else { return nil }
    return entries[i]?.value
  }

  /// The value for `key`, marking it most recently used.
  mutating func get(_ key: Key) -> Value? {
    guard let i = index[key] else { return nil }
    moveToHead(i)
    return entries[i]?.value
  }

  /// The value for `key` if `keep` accepts it, marking it most recently used when `use` accepts it
  /// too (else it is neither returned nor marked); an entry `keep` rejects is removed. One hash
  /// lookup where `peek` + `get` (or `remove`) take two.
  mutating func get(
    _ key: Key, removingUnless keep: (Value) -> Bool, using use: (Value) -> Bool = { _ in true }
  ) -> Value? {
    guard let value = kept(key, removingUnless: keep, marking: use), use(value) else { return nil }
    return value
  }

  /// The value for `key` if `keep` accepts it (else it is removed), marked most recently used only
  /// when `use` accepts it too. Unlike `get(_:removingUnless:using:)` a kept value `use` rejects is
  /// still returned: one hash lookup for a caller that reads expired entries without using them.
  mutating func kept(_ key: Key, removingUnless keep: (Value) -> Bool, marking use: (Value) -> Bool) -> Value? {
    guard let i = index[key], let value = entries[i]?.value else { return nil }
    guard keep(value) else {
      index.removeValue(forKey: key)
      free(i)
      return nil
    }
    if use(value) { moveToHead(i) }
    return value
  }

  /// The slot holding `key`, nil when it is absent. With `value(at:)` and `set(_:_:slot:)`: one
  /// hash lookup for a look at an entry followed by a store to it.
  func slot(of key: Key) -> Int? { index[key] }

  /// The value in `slot` (from `slot(of:)`).
  func value(at slot: Int) -> Value? { entries[slot]?.value }

  /// Stores `value` as the most recently used entry; returns the entry evicted to make room, if any.
  @discardableResult
  mutating func set(_ key: Key, _ value: Value) -> (key: Key, value: Value)? {
    set(key, value, slot: index[key])
  }

  /// `set(_:_:)` where `slot` is what `slot(of: key)` said, with no change to the store since.
  @discardableResult
  mutating func set(_ key: Key, _ value: Value, slot: Int?) -> (key: Key, value: Value)? {
    if let i = slot {
      entries[i]?.value = value
      moveToHead(i)
      return nil
    }
    guard capacity > 0 else { return (key, value) }
    var evicted: (key: Key, value: Value)?
    if index.count >= capacity, tail >= 0, let last = entries[tail] {
      evicted = (last.key, last.value)
      remove(last.key)
    }
    let slot: Int
    if let reused = freeSlots.popLast() {
      slot = reused
      entries[slot] = Entry(key: key, value: value)
      prevs[slot] = -1
      nexts[slot] = head
    } else {
      slot = entries.count
      entries.append(Entry(key: key, value: value))
      prevs.append(-1)
      nexts.append(head)
    }
    if head >= 0 { prevs[head] = slot }
    head = slot
    if tail < 0 { tail = slot }
    index[key] = slot
    return evicted
  }

  /// Removes `key`; returns its value if it was present.
  @discardableResult
  mutating func remove(_ key: Key) -> Value? {
    guard let i = index.removeValue(forKey: key), let value = entries[i]?.value else { return nil }
    free(i)
    return value
  }

  mutating func removeAll() {
    entries.removeAll()
    prevs.removeAll()
    nexts.removeAll()
    freeSlots.removeAll()
    index.removeAll()
    head = -1
    tail = -1
  }

  /// Unlinks slot `i`, empties it and keeps it for reuse (its key is already out of `index`).
  private mutating func free(_ i: Int) {
    unlink(i)
    entries[i] = nil
    freeSlots.append(i)
  }

  /// Joins the neighbours of slot `i`.
  private mutating func unlink(_ i: Int) {
    let prev = prevs[i]
    let next = nexts[i]
    if prev >= 0 { nexts[prev] = next } else { head = next }
    if next >= 0 { prevs[next] = prev } else { tail = prev }
  }

  private mutating func moveToHead(_ i: Int) {
    guard i != head else { return }
    unlink(i)
    prevs[i] = -1
    nexts[i] = head
    if head >= 0 { prevs[head] = i }
    head = i
    if tail < 0 { tail = i }
  }
}

/// A dictionary with a capacity that evicts its least recently used entry in O(1).
///
/// Recency order is an intrusive doubly-linked list threaded through an array of nodes by index;
/// freed slots are reused. Not thread-safe: `DNSCache` keeps it behind a mutex.
struct LRUStore<Key: Hashable, Value> {
  private struct Node {
    var key: Key
    var value: Value
    var prev: Int  // towards the most recently used end; -1 at the head
    var next: Int  // towards the least recently used end; -1 at the tail
  }

  private var nodes: [Node?] = []
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
    while i >= 0, let node = nodes[i] {
      out.append(node.key)
      i = node.next
    }
    return out
  }

  /// The value for `key` without changing its recency.
  func peek(_ key: Key) -> Value? {
    guard let i = index[key] else { return nil }
    return nodes[i]?.value
  }

  /// The value for `key`, marking it most recently used.
  mutating func get(_ key: Key) -> Value? {
    guard let i = index[key] else { return nil }
    moveToHead(i)
    return nodes[i]?.value
  }

  /// The value for `key` if `keep` accepts it, marking it most recently used; an entry `keep`
  /// rejects is removed. One hash lookup where `peek` + `get` (or `remove`) take two.
  mutating func get(_ key: Key, removingUnless keep: (Value) -> Bool) -> Value? {
    guard let i = index[key], let value = nodes[i]?.value else { return nil }
    guard keep(value) else {
      index.removeValue(forKey: key)
      if let node = nodes[i] { unlink(prev: node.prev, next: node.next) }
      nodes[i] = nil
      freeSlots.append(i)
      return nil
    }
    moveToHead(i)
    return value
  }

  /// Stores `value` as the most recently used entry; returns the entry evicted to make room, if any.
  @discardableResult
  mutating func set(_ key: Key, _ value: Value) -> (key: Key, value: Value)? {
    if let i = index[key] {
      nodes[i]?.value = value
      moveToHead(i)
      return nil
    }
    guard capacity > 0 else { return (key, value) }
    var evicted: (key: Key, value: Value)?
    if index.count >= capacity, tail >= 0, let last = nodes[tail] {
      evicted = (last.key, last.value)
      remove(last.key)
    }
    let node = Node(key: key, value: value, prev: -1, next: head)
    let slot: Int
    if let free = freeSlots.popLast() {
      slot = free
      nodes[slot] = node
    } else {
      slot = nodes.count
      nodes.append(node)
    }
    if head >= 0 { nodes[head]?.prev = slot }
    head = slot
    if tail < 0 { tail = slot }
    index[key] = slot
    return evicted
  }

  /// Removes `key`; returns its value if it was present.
  @discardableResult
  mutating func remove(_ key: Key) -> Value? {
    guard let i = index.removeValue(forKey: key), let node = nodes[i] else { return nil }
    unlink(prev: node.prev, next: node.next)
    nodes[i] = nil
    freeSlots.append(i)
    return node.value
  }

  mutating func removeAll() {
    nodes.removeAll()
    freeSlots.removeAll()
    index.removeAll()
    head = -1
    tail = -1
  }

  /// Joins the neighbours of a node; takes its links, not the node, so moving a node to the
  /// head never copies (retains and releases) its key and value.
  private mutating func unlink(prev: Int, next: Int) {
    if prev >= 0 { nodes[prev]?.next = next } else { head = next }
    if next >= 0 { nodes[next]?.prev = prev } else { tail = prev }
  }

  private mutating func moveToHead(_ i: Int) {
    guard i != head, let prev = nodes[i]?.prev, let next = nodes[i]?.next else { return }
    unlink(prev: prev, next: next)
    nodes[i]?.prev = -1
    nodes[i]?.next = head
    if head >= 0 { nodes[head]?.prev = i }
    head = i
    if tail < 0 { tail = i }
  }
}

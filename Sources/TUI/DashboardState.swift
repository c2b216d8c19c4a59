import Foundation
import Resolver

/// The four panels, switched with Tab/Shift-Tab and 1–4.
public enum Panel: Int, CaseIterable, Sendable {
  case servers, queries, privacy, lookup
  public var title: String {
    switch self {
    case .servers: "Servers"
    case .queries: "Queries"
    case .privacy: "Privacy"
    case .lookup: "Lookup"
    }
  }
}

/// Sort columns of the Servers panel (`<`/`>` move, `i` inverts).
public enum SortColumn: Int, CaseIterable, Sendable {
  case address, zone, dot, probes, queries, srtt
  public var title: String {
    switch self {
    case .address: "address"
    case .zone: "zone"
    case .dot: "DoT state"
    case .probes: "probes"
    case .queries: "queries"
    case .srtt: "srtt"
    }
  }
}

/// A one-line prompt at the bottom.
public enum Prompt: Sendable, Equatable {
  case filter, flushName, lookup, confirmFlush
}

/// Keys as the dashboard understands them (decoded from curses by the terminal layer).
public enum Key: Sendable, Equatable {
  case char(Character)
  case up, down, left, right, pageUp, pageDown, home, end
  case enter, escape, tab, backTab, backspace, resize, interrupt
}

/// Why a request was sent, so its response can be reported in the footer.
public enum Purpose: Sendable, Equatable {
  case flushAll
  case flushName(String)
  case flushNegative
  case probe(String)
  case forget(String)
  case lookup(String)
}

/// What the key handling asks the dashboard to do.
public enum Effect: Sendable, Equatable {
  case quit
  case send(ControlRequest, Purpose)
}

/// The whole UI state as a plain value: panels, selection, sort, filter, prompts, messages.
/// Keys go in, effects come out; nothing here touches curses or the resolver.
public struct DashboardState: Sendable {
  public var panel: Panel = .servers
  public var selected = 0
  public var scroll: [Panel: Int] = [:]
  public var sort: SortColumn = .address
  public var sortDescending = false
  public var filter = ""
  public var prompt: Prompt?
  public var input = ""
  public var paused = false
  public var showHelp = false
  public var detail = false
  /// First line shown of the detail view (its history scrolls; the renderer clamps it).
  public var detailScroll = 0
  public var message = ""
  public var lookup: LookupOutcome?
  public var lookupPending: String?
  public var lookupError: String?
  /// Rows the current panel can show (set by the renderer each frame, for paging).
  public var pageRows = 10
  public var colors = true

  public init() {}

  // MARK: Servers list

  /// The Servers panel's rows after filter and sort.
  public func visibleServers(_ snapshot: MonitorSnapshot) -> [ServerSnapshot] {
    let needle = filter.lowercased()
    let now = snapshot.stats.now
    var rows = snapshot.servers
    if !needle.isEmpty {
      rows = rows.filter { s in
        ([s.address, s.dot.phase, s.reason] + s.nsNames + s.zones).contains { $0.lowercased().contains(needle) }
      }
    }
    func key(_ s: ServerSnapshot) -> (String, Double) {
      switch sort {
      case .address: (Self.addressKey(s.address), 0)
      case .zone: (s.zones.first ?? "~", 0)
      case .dot: (Format.phase(s.dot, now: now), 0)
      case .probes: ("", Double(s.probes.started))
      case .queries: ("", Double(s.queries.values.reduce(0, +)))
      case .srtt: ("", s.srttMs ?? .infinity)
      }
    }
    rows.sort { a, b in
      let ka = key(a)
      let kb = key(b)
      if ka == kb { return a.address < b.address }
      return sortDescending ? ka > kb : ka < kb
    }
    return rows
  }

  /// Sorts dotted quads numerically.
  static func addressKey(_ a: String) -> String {
    let parts = a.split(separator: ".")
    guard parts.count == 4, parts.allSatisfy({ Int($0) != nil }) else { return "~" + a }
    return parts.map { String(repeating: "0", count: max(0, 3 - $0.count)) + $0 }.joined(separator: ".")
  }

  /// The selected server, if the Servers panel has one.
  public func selectedServer(_ snapshot: MonitorSnapshot) -> ServerSnapshot? {
    let rows = visibleServers(snapshot)
    return rows.indices.contains(selected) ? rows[selected] : nil
  }

  // MARK: Keys

  /// Applies one key; returns what the dashboard must do.
  public mutating func handle(_ key: Key, snapshot: MonitorSnapshot) -> [Effect] {
    if key == .interrupt { return [.quit] }
    if key == .resize { return [] }
    if let prompt { return handlePrompt(prompt, key) }
    if showHelp {
      if key == .char("q") { return [.quit] }
      showHelp = false
      return []
    }
    if detail && (key == .escape || key == .enter) {
      detail = false
      return []
    }
    if detail, let delta = detailScrollDelta(key) {
      detailScroll = max(0, min(Int.max / 4, detailScroll &+ delta))
      return []
    }
    let rows = rowCount(snapshot)
    switch key {
    case .char("q"): return [.quit]
    case .char("?"), .char("h"): showHelp = true
    case .tab: switchPanel(to: Panel(rawValue: (panel.rawValue + 1) % Panel.allCases.count)!)
    case .backTab: switchPanel(to: Panel(rawValue: (panel.rawValue + Panel.allCases.count - 1) % Panel.allCases.count)!)
    case .char("1"), .char("2"), .char("3"), .char("4"):
      if case .char(let c) = key, let n = c.wholeNumberValue { switchPanel(to: Panel(rawValue: n - 1)!) }
    case .up, .char("k"): move(-1, rows)
    case .down, .char("j"): move(1, rows)
    case .pageUp: move(-max(1, pageRows - 1), rows)
    case .pageDown: move(max(1, pageRows - 1), rows)
    case .home, .char("g"): move(-Int.max / 2, rows)
    case .end, .char("G"): move(Int.max / 2, rows)
    case .char(" "), .char("p"):
      paused.toggle()
      message = paused ? "display paused (the resolver keeps running)" : "display resumed"
    case .char("<"):
      sort = SortColumn(rawValue: (sort.rawValue + SortColumn.allCases.count - 1) % SortColumn.allCases.count)!
      message = "sorted by \(sort.title)"
    case .char(">"):
      sort = SortColumn(rawValue: (sort.rawValue + 1) % SortColumn.allCases.count)!
      message = "sorted by \(sort.title)"
    case .char("i"):
      sortDescending.toggle()
      message = "sorted by \(sort.title), \(sortDescending ? "descending" : "ascending")"
    case .char("/"): open(.filter, initial: filter)
    case .escape:
      if !filter.isEmpty {
        filter = ""
        message = "filter cleared"
      }
    case .enter:
      if panel == .servers, selectedServer(snapshot) != nil {
        detail = true
        detailScroll = 0
      }
    case .char("f"): open(.confirmFlush)
    case .char("F"): open(.flushName)
    case .char("n"): return [.send(ControlRequest(cmd: "flush", negative: true), .flushNegative)]
    case .char("R"), .char("r"):
      guard let s = target(snapshot) else { return [] }
      return [.send(ControlRequest(cmd: "probe", ip: s.address), .probe(s.address))]
    case .char("x"):
      guard let s = target(snapshot) else { return [] }
      return [.send(ControlRequest(cmd: "forget", ip: s.address), .forget(s.address))]
    case .char("l"): open(.lookup)
    default: break
    }
    return []
  }

  /// How far a movement key scrolls the detail view; nil for other keys.
  private func detailScrollDelta(_ key: Key) -> Int? {
    switch key {
    case .up, .char("k"): -1
    case .down, .char("j"): 1
    case .pageUp: -max(1, pageRows - 1)
    case .pageDown: max(1, pageRows - 1)
    case .home, .char("g"): -Int.max / 4
    case .end, .char("G"): Int.max / 4
    default: nil
    }
  }

  private mutating func target(_ snapshot: MonitorSnapshot) -> ServerSnapshot? {
    guard panel == .servers, let s = selectedServer(snapshot) else {
      message = "select a server in the Servers panel first (press 1)"
      return nil
    }
    return s
  }

  private mutating func open(_ p: Prompt, initial: String = "") {
    prompt = p
    input = initial
  }

  private mutating func switchPanel(to p: Panel) {
    panel = p
    detail = false
  }

  /// Number of rows of the current panel (for moving the selection).
  func rowCount(_ snapshot: MonitorSnapshot) -> Int {
    switch panel {
    case .servers: visibleServers(snapshot).count
    case .queries: snapshot.queries.count
    case .privacy: snapshot.stats.privacy.recent.count
    case .lookup: (lookup?.answer.count ?? 0) + (lookup?.hops.count ?? 0)
    }
  }

  private mutating func move(_ delta: Int, _ rows: Int) {
    if panel == .servers {
      selected = max(0, min(rows - 1, selected &+ delta))
    } else {
      scroll[panel] = max(0, min(max(0, rows - 1), (scroll[panel] ?? 0) &+ delta))
    }
  }

  private mutating func handlePrompt(_ p: Prompt, _ key: Key) -> [Effect] {
    if p == .confirmFlush {
      prompt = nil
      if key == .char("y") || key == .char("Y") { return [.send(ControlRequest(cmd: "flush"), .flushAll)] }
      message = "flush cancelled"
      return []
    }
    switch key {
    case .escape:
      prompt = nil
      if p == .filter {
        filter = ""
        message = "filter cleared"
      }
    case .enter:
      prompt = nil
      let text = input.trimmingCharacters(in: .whitespaces)
      switch p {
      case .filter:
        filter = text
        selected = 0
        message = text.isEmpty ? "filter cleared" : "filter: \(text)"
      case .flushName:
        guard !text.isEmpty else { return [] }
        return [.send(ControlRequest(cmd: "flush", name: text), .flushName(text))]
      case .lookup:
        let parts = text.split(separator: " ").map(String.init)
        guard let name = parts.first else { return [] }
        let type = parts.count > 1 ? parts[1].uppercased() : "A"
        lookupPending = "\(name) \(type)"
        lookupError = nil
        panel = .lookup
        detail = false
        return [.send(ControlRequest(cmd: "lookup", name: name, type: type), .lookup("\(name) \(type)"))]
      case .confirmFlush: break
      }
    case .backspace:
      if !input.isEmpty { input.removeLast() }
      if p == .filter { filter = input }
    case .char(let c):
      input.append(c)
      if p == .filter {
        filter = input
        selected = 0
      }
    default: break
    }
    return []
  }

  // MARK: Responses

  /// Reports a control response (JSON line) in the footer or the lookup pane.
  public mutating func apply(response: String, for purpose: Purpose) {
    let object = (try? JSONSerialization.jsonObject(with: Data(response.utf8))) as? [String: Any] ?? [:]
    let ok = object["ok"] as? Bool == true
    let error = object["error"] as? String ?? "no response"
    let flushed = object["flushed"] as? Int ?? 0
    let entries = flushed == 1 ? "1 entry" : "\(flushed) entries"
    switch purpose {
    case .flushAll: message = ok ? "cache flushed: \(entries)" : "flush failed: \(error)"
    case .flushName(let n): message = ok ? "flushed \(n) and below: \(entries)" : "flush failed: \(error)"
    case .flushNegative: message = ok ? "negative answers flushed: \(entries)" : "flush failed: \(error)"
    case .probe(let ip):
      let summary = object["summary"] as? String ?? "probe requested"
      message = ok ? "\(ip): \(summary)" : "probe \(ip): \(error)"
    case .forget(let ip): message = ok ? "\(ip): encryption state forgotten" : "forget \(ip): \(error)"
    case .lookup(let q):
      lookupPending = nil
      if ok, let value = object["lookup"], let data = try? JSONSerialization.data(withJSONObject: value),
        let outcome = try? JSONDecoder().decode(LookupOutcome.self, from: data)
      {
        lookup = outcome
        lookupError = nil
        message = "lookup \(q): \(outcome.rcode), \(outcome.answer.count) answer(s)"
      } else {
        lookupError = error
        message = "lookup \(q) failed: \(error)"
      }
    }
  }
}

import Resolver

/// Lays out one frame as styled lines from the UI state and a snapshot. Pure: the curses layer
/// paints the lines, the plain-text mode prints them, tests read them.
public struct Renderer: Sendable {
  public static let minWidth = 80
  public static let minHeight = 24

  public var width: Int
  public var height: Int

  public init(width: Int, height: Int) {
    self.width = width
    self.height = height
  }

  /// Rows available to a panel body.
  public var bodyRows: Int { max(1, height - 5) }

  /// The whole screen: exactly `height` lines.
  public func frame(_ state: DashboardState, _ snap: MonitorSnapshot?, attached: String? = nil) -> [Line] {
    guard width >= Self.minWidth, height >= Self.minHeight else { return tooSmall() }
    var lines: [Line] = []
    guard let snap else {
      lines = [Line(" Sotto — waiting for the resolver…", .header).fitted(width, fill: .header)]
      return pad(lines)
    }
    lines += header(snap, state, attached: attached)
    lines.append(tabs(state))
    var body: [Line]
    if state.detail, state.panel == .servers, let s = state.selectedServer(snap) {
      body = detail(s, now: snap.stats.now)
      body = Array(body.dropFirst(min(state.detailScroll, max(0, body.count - bodyRows))))
    } else {
      switch state.panel {
      case .servers: body = servers(snap, state, rows: bodyRows)
      case .queries: body = queries(snap.queries, scroll: state.scroll[.queries] ?? 0, rows: bodyRows)
      case .privacy: body = privacy(snap.stats, scroll: state.scroll[.privacy] ?? 0, rows: bodyRows)
      case .lookup: body = lookup(state)
      }
    }
    body = Array(body.prefix(bodyRows))
    while body.count < bodyRows { body.append(Line()) }
    if state.showHelp { body = overlay(help(), on: body) }
    lines += body
    lines.append(status(state))
    lines.append(footer())
    return pad(lines)
  }

  func pad(_ lines: [Line]) -> [Line] {
    var out = Array(lines.prefix(height))
    while out.count < height { out.append(Line()) }
    return out
  }

  func tooSmall() -> [Line] {
    let msg = [
      "Terminal too small: \(width)x\(height)",
      "Please enlarge the window to at least \(Self.minWidth)x\(Self.minHeight)",
      "(q quits)",
    ]
    var lines = Array(repeating: Line(), count: max(0, height))
    let top = max(0, height / 2 - 1)
    for (i, m) in msg.enumerated() where top + i < height {
      let left = max(0, (width - Format.width(m)) / 2)
      lines[top + i] = Line([Segment(String(repeating: " ", count: left)), Segment(m, i == 1 ? .warn : .normal)])
        .fitted(width)
    }
    return lines
  }

  // MARK: Header, tabs, footer

  public func header(_ snap: MonitorSnapshot, _ state: DashboardState, attached: String? = nil) -> [Line] {
    let s = snap.stats
    let enc = s.encryption
    var first = [
      Segment(" Sotto ", .title),
      Segment(" up \(Format.duration(s.uptime))", .header),
      Segment(
        "  queries \(s.clientQueries) (\(String(format: "%.1f", s.queryRate))/s\(Self.encryptedClients(s).map { "; " + $0 } ?? ""))",
        .header),
      Segment("  cache \(s.cache.entries) entries, hit \(Format.percent(s.cache.hitRate))", .header),
      Segment("  encrypted \(enc.enabled ? Format.percent(enc.encryptedShare) : "off")", .header),
    ]
    if let attached { first.append(Segment("  attached \(attached)", .header)) }
    var line1 = Line(first).fitted(width - (state.paused ? 9 : 0), fill: .header)
    if state.paused { line1.segments.append(Segment(" PAUSED  ", .badge)) }
    let order = ["established", "good-idle", "good-stale", "probing", "damped", "retryable", "unknown"]
    let states = order.compactMap { k in s.encryption.serversByState[k].map { "\($0) \(k)" } }
    var second: [Segment] = [Segment(" servers \(enc.servers): ", .normal)]
    second.append(Segment(states.isEmpty ? "none yet" : states.joined(separator: ", "), .normal))
    second.append(Segment("   listening \(s.listeners.isEmpty ? "-" : s.listeners.joined(separator: " "))", .dim))
    if enc.cleartextWhileGood > 0 {
      second.append(Segment("  CLEARTEXT TO KNOWN-GOOD: \(enc.cleartextWhileGood)", .bad))
    }
    return [line1, Line(second).fitted(width)]
  }

  /// With a DoT or DoQ listener: how many client queries came over each ("DoT 12, DoQ 34"; nil
  /// without one).
  static func encryptedClients(_ s: MonitorStats) -> String? {
    let dot = s.listeners.contains { $0.hasPrefix("dot ") }
    let doq = s.listeners.contains { $0.hasPrefix("doq ") }
    guard dot || doq else { return nil }
    let parts = (dot ? ["DoT \(s.listener.tlsQueries)"] : []) + (doq ? ["DoQ \(s.listener.quicQueries)"] : [])
    return parts.joined(separator: ", ")
  }

  func tabs(_ state: DashboardState) -> Line {
    var segs: [Segment] = [Segment(" ")]
    for p in Panel.allCases {
      segs.append(Segment(" \(p.rawValue + 1) \(p.title) ", p == state.panel ? .activeTab : .tab))
      segs.append(Segment(" "))
    }
    if state.panel == .servers {
      let arrow = state.sortDescending ? "▼" : "▲"
      segs.append(Segment("  sort: \(state.sort.title) \(arrow)", .dim))
      if !state.filter.isEmpty { segs.append(Segment("  filter: \(state.filter)", .warn)) }
    }
    return Line(segs).fitted(width)
  }

  func status(_ state: DashboardState) -> Line {
    switch state.prompt {
    case .filter?:
      return Line([Segment(" filter (Enter keeps, Esc clears): ", .prompt), Segment(state.input + "▏")]).fitted(width)
    case .flushName?:
      return Line([Segment(" flush name and everything below: ", .prompt), Segment(state.input + "▏")]).fitted(width)
    case .lookup?: return Line([Segment(" lookup NAME [TYPE]: ", .prompt), Segment(state.input + "▏")]).fitted(width)
    case .confirmFlush?: return Line(" Flush the whole cache? (y/n) ", .prompt).fitted(width)
    case nil: return Line(" " + state.message, .warn).fitted(width)
    }
  }

  func footer() -> Line {
    let keys: [(String, String)] = [
      ("q", "quit"), ("?", "help"), ("Tab", "panel"), ("↑↓", "move"), ("<>", "sort"), ("/", "filter"),
      ("↵", "detail"), ("p", "pause"), ("f", "flush"), ("F", "flush name"), ("n", "neg"), ("R", "probe"),
      ("x", "forget"), ("l", "lookup"),
    ]
    var segs: [Segment] = []
    for (k, what) in keys {
      segs.append(Segment(k, .key))
      segs.append(Segment(" \(what) ", .normal))
    }
    return Line(segs).fitted(width)
  }

  // MARK: Servers

  struct Column {
    var title: String
    var width: Int
    var right = false
  }

  /// Column widths of the Servers table for this width (flexible NS/zone and certificate columns).
  public func serverColumns() -> [(String, Int)] {
    let wide = width >= 110
    var fixed: [(String, Int)] = [
      ("ADDRESS", wide ? 15 : 13), ("NS / ZONE", 0), ("DoT", wide ? 18 : 12), ("DoQ", wide ? 18 : 12),
    ]
    fixed += [wide ? ("PROBES s/ok/f/t", 15) : ("PROBES", 7), ("QUERIES", wide ? 14 : 11), ("SRTT", wide ? 7 : 6)]
    if wide { fixed.append(("CERT", 0)) }
    let used = fixed.map(\.1).reduce(0, +) + fixed.count  // one space per column
    let free = max(10, width - used)
    let nsWidth = wide ? max(16, free / 2) : free
    let certWidth = max(4, free - nsWidth)
    return fixed.map { ($0.0, $0.0 == "NS / ZONE" ? nsWidth : $0.0 == "CERT" ? certWidth : $0.1) }
  }

  func servers(_ snap: MonitorSnapshot, _ state: DashboardState, rows: Int) -> [Line] {
    let cols = serverColumns()
    var out: [Line] = [Line(cols.map { Segment(Format.pad($0.0, $0.1) + " ", .title) }).fitted(width, fill: .title)]
    let list = state.visibleServers(snap)
    if list.isEmpty {
      out.append(
        Line(snap.servers.isEmpty ? " no authoritative server contacted yet" : " no server matches the filter", .dim))
      return out
    }
    let visible = max(1, rows - 1)
    let top = max(0, min(state.selected - visible / 2, list.count - visible))
    for (i, s) in list.enumerated().dropFirst(top).prefix(visible) {
      out.append(serverRow(s, cols: cols, now: snap.stats.now, selected: i == state.selected))
    }
    return out
  }

  public func serverRow(_ s: ServerSnapshot, cols: [(String, Int)], now: Double, selected: Bool) -> Line {
    var segs: [Segment] = []
    for (title, w) in cols {
      let text: String
      var style: Style = .normal
      switch title {
      case "ADDRESS": text = s.address
      case "NS / ZONE":
        let ns = s.nsNames.first.map { $0 + (s.nsNames.count > 1 ? "+\(s.nsNames.count - 1)" : "") } ?? "?"
        text = "\(ns) (\(s.zones.joined(separator: " ")))"
      case "DoT":
        text = Format.phase(s.dot, now: now)
        style = Self.style(phase: s.dot.phase)
      case "DoQ":
        text = Format.phase(s.doq, now: now)
        style = s.doq.map { Self.style(phase: $0.phase) } ?? .dim
      case "PROBES s/ok/f/t", "PROBES": text = Format.probes(s.probes)
      case "QUERIES": text = Format.queries(s.queries)
      case "SRTT":
        // A server held as unresponsive (R-24) shows that instead of its inflated srtt.
        text = s.unresponsiveProbeIn == nil ? Format.millis(s.srttMs) : "down"
        if s.unresponsiveProbeIn != nil { style = .bad }
      case "CERT":
        // The DoT certificate, else the DoQ one (a DoQ-only server has no DoT certificate).
        let t = s.dot.certificate != nil ? s.dot : (s.doq ?? s.dot)
        text = t.certificateNote ?? "-"
        style = t.certificate.map { $0.isValid ? .good : .warn } ?? .dim
      default: text = ""
      }
      segs.append(Segment(Format.pad(text, w, right: title == "SRTT") + " ", selected ? .selected : style))
    }
    return Line(segs).fitted(width, fill: selected ? .selected : nil)
  }

  static func style(phase: String) -> Style {
    switch phase {
    case "established", "good-idle": .good
    case "good-stale", "probing", "retryable": .warn
    case "damped": .bad
    default: .dim
    }
  }

  func detail(_ s: ServerSnapshot, now: Double) -> [Line] {
    var out: [Line] = [Line(" Server \(s.address)   (Esc or Enter: back)", .title).fitted(width, fill: .title)]
    func kv(_ k: String, _ v: String, _ style: Style = .normal) {
      out.append(Line([Segment(" " + Format.pad(k, 22), .dim), Segment(v, style)]).fitted(width))
    }
    kv("NS names", s.nsNames.joined(separator: ", "))
    kv("zones", s.zones.joined(separator: ", "))
    kv("next query goes", s.reason, s.reason.hasPrefix("Do53") ? .warn : .good)
    kv("queries", s.queries.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    kv("smoothed RTT", Format.millis(s.srttMs))
    if let probeIn = s.unresponsiveProbeIn {
      kv("unresponsive", "held, no query but probes; next probe in \(Format.millis(probeIn * 1000))", .bad)
    }
    kv("first / last seen", "\(Format.clock(s.firstSeen)) / \(Format.clock(s.lastSeen)) UTC")
    if s.cleartextWhileGood > 0 { kv("cleartext while good", "\(s.cleartextWhileGood)", .bad) }
    for (name, t) in [("DoT", Optional(s.dot)), ("DoQ", s.doq)] {
      guard let t else {
        kv(name, "- (not in this build)", .dim)
        continue
      }
      kv(name, Format.phase(t, now: now), Self.style(phase: t.phase))
      kv("  probes s/ok/f/t", Format.probes(t.probes))
      if !t.failures.isEmpty {
        kv(
          "  failures", t.failures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
          .bad)
      }
      if let f = t.lastFailure { kv("  last failure", f, .bad) }
      if let v = t.tlsVersion {
        kv("  TLS", "\(v), handshake \(Format.millis(t.handshakeMs))\(t.resumed ? ", resumed" : "")")
      }
      if let k = t.keepalive {
        kv("  keepalive", k == 0 ? "0: one connection per query" : "\(Format.millis(k * 1000)) (server's, RFC 7828)")
      }
      if let c = t.certificate {
        kv("  certificate", c.isValid ? "valid" : c.problems.joined(separator: ", "), c.isValid ? .good : .warn)
        if let subj = c.subject { kv("  subject", subj) }
        if let na = c.notAfter { kv("  not after", na) }
      }
    }
    out.append(Line(" History, newest first (↑/↓ scroll)", .dim).fitted(width))
    if s.history.isEmpty { out.append(Line("   no encryption events yet", .dim).fitted(width)) }
    for e in s.history {
      out.append(
        Line([
          Segment("   \(Format.clock(e.time))  ", .dim), Segment(Format.pad(e.transport?.rawValue ?? "-", 5), .normal),
          Segment(Format.pad(e.kind.rawValue, 19), Self.style(event: e.kind)), Segment(e.detail, .normal),
        ]).fitted(width))
    }
    return out
  }

  static func style(event: ServerEvent.Kind) -> Style {
    switch event {
    case .established: .good
    case .handshakeFailed, .handshakeTimeout, .sessionFailed, .queryTimeouts, .queryFailures: .bad
    case .operatorProbe, .localFailure: .warn
    case .connecting, .closed: .normal
    }
  }

  // MARK: Queries

  public func queryColumns() -> [(String, Int)] {
    var fixed: [(String, Int)] = [
      ("TIME", 8), ("CLIENT", 15), ("NAME", 0), ("TYPE", 5), ("RCODE", 8), ("LATENCY", 7), ("CACHE", 5), ("CLEAR", 5),
    ]
    if width < 100 { fixed.remove(at: 1) }
    let used = fixed.map(\.1).reduce(0, +) + fixed.count
    let free = max(20, width - used)
    let name = max(16, min(40, free * 2 / 5))
    return fixed.map { ($0.0, $0.0 == "NAME" ? name : $0.1) } + [("PATH", max(10, free - name))]
  }

  func queries(_ entries: [QueryLogEntry], scroll: Int, rows: Int) -> [Line] {
    let cols = queryColumns()
    var out: [Line] = [Line(cols.map { Segment(Format.pad($0.0, $0.1) + " ", .title) }).fitted(width, fill: .title)]
    if entries.isEmpty { out.append(Line(" no client queries yet", .dim)) }
    for e in entries.dropFirst(scroll).prefix(max(1, rows - 1)) { out.append(queryRow(e, cols: cols)) }
    return out
  }

  public func queryRow(_ e: QueryLogEntry, cols: [(String, Int)]) -> Line {
    var segs: [Segment] = []
    for (title, w) in cols {
      switch title {
      case "TIME": segs.append(Segment(Format.pad(Format.clock(e.time), w) + " ", .dim))
      case "CLIENT": segs.append(Segment(Format.pad(e.client, w) + " "))
      case "NAME": segs.append(Segment(Format.pad(e.name, w) + " "))
      case "TYPE": segs.append(Segment(Format.pad(e.type, w) + " "))
      case "RCODE":
        segs.append(
          Segment(Format.pad(e.rcode, w) + " ", e.rcode == "NOERROR" ? .normal : e.rcode == "NXDOMAIN" ? .warn : .bad))
      case "LATENCY": segs.append(Segment(Format.pad(Format.millis(e.latencyMs), w, right: true) + " "))
      case "CACHE":
        // A stale answer (serve-stale: no fresh answer in time) is a cache answer to notice.
        let text = e.stale ? "stale" : e.cacheHit ? "hit" : "miss"
        segs.append(Segment(Format.pad(text, w) + " ", e.stale ? .warn : e.cacheHit ? .good : .dim))
      case "CLEAR":
        let n = e.cleartextHops
        let text = n == 0 ? "-" : "\(n)!"
        segs.append(Segment(text, n == 0 ? .dim : .leak))
        segs.append(Segment(String(repeating: " ", count: max(0, w - Format.width(text))) + " "))
      case "PATH": segs += pathSegments(e.hops)
      default: break
      }
    }
    return Line(segs).fitted(width)
  }

  /// A hop path with cleartext transports in the leak style.
  public func pathSegments(_ hops: [HopSummary]) -> [Segment] {
    guard !hops.isEmpty else { return [Segment("cache", .dim)] }
    var segs: [Segment] = []
    for (i, h) in hops.enumerated() {
      if i > 0 { segs.append(Segment(" > ", .dim)) }
      segs.append(Segment(h.zone + " "))
      segs.append(Segment(Format.transport(h.transport), h.isCleartext ? .leak : .good))
    }
    return segs
  }

  // MARK: Privacy

  func privacy(_ s: MonitorStats, scroll: Int, rows: Int) -> [Line] {
    let p = s.privacy
    let total = p.cleartextHops + p.encryptedHops
    var out: [Line] = [Line(" Cleartext exposure", .title).fitted(width, fill: .title)]
    out.append(
      Line([
        Segment(" leak meter "),
        Segment(
          Format.meter(p.cleartextShare, columns: 32),
          p.cleartextShare > 0.5 ? .bad : p.cleartextShare > 0 ? .warn : .good),
        Segment(
          " \(Format.percent(p.cleartextShare)) cleartext: \(p.cleartextHops) of \(total) authoritative queries showed a name in cleartext"
        ),
      ]).fitted(width))
    let spark = max(10, min(60, width - 30))
    out.append(
      Line([
        Segment(" cleartext / 10 s  "), Segment(Format.sparkline(Array(p.cleartextSeries.suffix(spark))), .bad),
        Segment("  last \(spark * 10 / 60) min", .dim),
      ]).fitted(width))
    out.append(
      Line([Segment(" encrypted / 10 s  "), Segment(Format.sparkline(Array(p.encryptedSeries.suffix(spark))), .good)])
        .fitted(width))
    out.append(
      Line(
        " cleartext to known-good servers: \(s.encryption.cleartextWhileGood) (must be 0)",
        s.encryption.cleartextWhileGood == 0 ? .dim : .bad))
    out.append(Line())
    let half = width / 2
    out.append(
      Line([Segment(Format.pad(" BY ZONE", half), .title), Segment(Format.pad("BY SERVER", width - half), .title)]))
    let zones = p.byZone.sorted { $0.value == $1.value ? $0.key < $1.key : $0.value > $1.value }.prefix(5).map { $0 }
    let servers = p.byServer.sorted { $0.value == $1.value ? $0.key < $1.key : $0.value > $1.value }.prefix(5).map {
      $0
    }
    for i in 0..<max(1, max(zones.count, servers.count)) {
      let z =
        i < zones.count
        ? " \(Format.pad(zones[i].key, half - 10)) \(Format.pad("\(zones[i].value)", 7, right: true))"
        : (i == 0 ? " none" : "")
      let sv =
        i < servers.count
        ? "\(Format.pad(servers[i].key, half - 10)) \(Format.pad("\(servers[i].value)", 7, right: true))" : ""
      out.append(Line([Segment(Format.pad(z, half)), Segment(sv)]).fitted(width))
    }
    out.append(Line())
    out.append(
      Line(
        " " + Format.pad("TIME", 9) + Format.pad("NAME SENT IN CLEARTEXT", 36) + Format.pad("ZONE", 20)
          + Format.pad("SERVER", 16) + "TRANSPORT", .title
      ).fitted(width, fill: .title))
    let room = max(0, rows - out.count)
    for l in p.recent.dropFirst(scroll).prefix(room) {
      out.append(
        Line([
          Segment(" " + Format.pad(Format.clock(l.time), 9), .dim), Segment(Format.pad(l.name, 36)),
          Segment(Format.pad(l.zone, 20)),
          Segment(Format.pad(l.server, 16)), Segment(Format.transport(l.transport), .leak),
        ]).fitted(width))
    }
    if p.recent.isEmpty { out.append(Line(" nothing went out in cleartext yet", .dim)) }
    return out
  }

  // MARK: Lookup

  func lookup(_ state: DashboardState) -> [Line] {
    var out: [Line] = [Line(" Lookup   (l: new lookup)", .title).fitted(width, fill: .title)]
    if let pending = state.lookupPending {
      out.append(Line(" resolving \(pending)…", .warn))
      return out
    }
    if let err = state.lookupError {
      out.append(Line(" lookup failed: \(err)", .bad))
      return out
    }
    guard let r = state.lookup else {
      out.append(Line(" press l and type a name (and optionally a type) to resolve it here", .dim))
      return out
    }
    out.append(
      Line(
        [
          Segment(" \(r.name) \(r.type)  →  "), Segment(r.rcode, r.rcode == "NOERROR" ? .good : .bad),
          Segment(
            "  in \(Format.millis(r.latencyMs)), \(r.cacheHit ? "from the cache" : "\(r.hops.count) hop(s) over the network")"
          ),
        ] + (r.stale ? [Segment("  stale answer, TTL 30", .warn)] : [])
      ).fitted(width))
    if let why = r.failureReason { out.append(Line(" reason: \(why)", r.stale ? .warn : .bad).fitted(width)) }
    out.append(Line())
    out.append(Line(" ANSWER", .title).fitted(width, fill: .title))
    if r.answer.isEmpty { out.append(Line(" (empty)", .dim)) }
    for a in r.answer { out.append(Line(" " + a).fitted(width)) }
    out.append(Line())
    out.append(Line([Segment(" path  ")] + pathSegments(r.hops)).fitted(width))
    out.append(Line())
    out.append(
      Line(" " + Format.pad("ZONE", 24) + Format.pad("SERVER", 18) + Format.pad("TRANSPORT", 11) + "OUTCOME", .title)
        .fitted(width, fill: .title))
    for h in r.hops {
      out.append(
        Line([
          Segment(" " + Format.pad(h.zone, 24)), Segment(Format.pad(h.server, 18)),
          Segment(Format.pad(Format.transport(h.transport), 11), h.isCleartext ? .leak : .good), Segment(h.outcome),
        ]).fitted(width))
    }
    return out
  }

  // MARK: Help

  func help() -> [String] {
    [
      "Keys",
      "q, Ctrl-C        quit (the terminal is restored)",
      "?                this help (any key closes it)",
      "Tab, Shift-Tab   next / previous panel;  1-4 go to a panel",
      "↑↓ j k PgUp PgDn Home End   move the selection / scroll",
      "< >              sort column (Servers);  i inverts the order",
      "/                filter servers (Enter keeps, Esc clears)",
      "Enter            details of the selected server and why it uses its transport",
      "Space, p         pause the display (the resolver keeps running)",
      "f                flush the whole cache (asks y/n)",
      "F                flush one name and everything below it",
      "n                flush negative answers only",
      "R                probe the selected server's DoT/DoQ now (ends its damping)",
      "x                forget the selected server's encryption state",
      "l                look up a name: answer and per-hop transports in panel 4",
      "Cleartext hops are marked in red (bold underline without colors).",
    ]
  }

  func overlay(_ text: [String], on body: [Line]) -> [Line] {
    var out = body
    let inner = min(width - 4, (text.map { Format.width($0) }.max() ?? 20) + 2)
    let left = max(0, (width - inner - 2) / 2)
    let top = max(0, (body.count - text.count - 2) / 2)
    let pad = String(repeating: " ", count: left)
    func put(_ row: Int, _ line: Line) {
      if row < out.count { out[row] = line }
    }
    put(top, Line([Segment(pad), Segment("┌" + String(repeating: "─", count: inner) + "┐", .title)]).fitted(width))
    for (i, t) in text.enumerated() {
      put(
        top + 1 + i,
        Line([
          Segment(pad), Segment("│", .title), Segment(" " + Format.pad(t, inner - 1), i == 0 ? .title : .prompt),
          Segment("│", .title),
        ])
        .fitted(width))
    }
    put(
      top + 1 + text.count,
      Line([Segment(pad), Segment("└" + String(repeating: "─", count: inner) + "┘", .title)]).fitted(width))
    return out
  }

  // MARK: Plain text (`top -b` style)

  /// A plain-text report of the snapshot: header, every server, the latest queries, exposure.
  public func plain(_ snap: MonitorSnapshot, queries: Int = 10) -> String {
    var state = DashboardState()
    state.selected = -1
    var lines = header(snap, state)
    lines.append(Line())
    lines += servers(snap, state, rows: snap.servers.count + 2)
    lines.append(Line())
    lines += self.queries(Array(snap.queries.prefix(queries)), scroll: 0, rows: queries + 1)
    lines.append(Line())
    lines += privacy(snap.stats, scroll: 0, rows: 20)
    return lines.map { $0.text.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) }.joined(
      separator: "\n")
  }
}

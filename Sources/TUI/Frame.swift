/// How a piece of text is drawn; the terminal maps it to colors or to monochrome attributes.
public enum Style: Sendable, Hashable {
  case normal, header, title, tab, activeTab, good, warn, bad, dim, selected, leak, badge, key, prompt
}

/// A run of text in one style.
public struct Segment: Sendable, Hashable {
  public var text: String
  public var style: Style
  public init(_ text: String, _ style: Style = .normal) {
    self.text = text
    self.style = style
  }
}

/// One screen row.
public struct Line: Sendable, Hashable {
  public var segments: [Segment]
  public init(_ segments: [Segment] = []) { self.segments = segments }
  public init(_ text: String, _ style: Style = .normal) { segments = [Segment(text, style)] }

  /// The row's text without styles.
  public var text: String { segments.map(\.text).joined() }

  /// Cut to `width` display columns and padded with the last style's spaces (for full-width bars).
  public func fitted(_ width: Int, fill: Style? = nil) -> Line {
    var out: [Segment] = []
    var used = 0
    for s in segments where used < width {
      let t = Format.truncate(s.text, width - used)
      out.append(Segment(t, s.style))
      used += Format.width(t)
    }
    if let fill, used < width { out.append(Segment(String(repeating: " ", count: width - used), fill)) }
    return Line(out)
  }
}

import CNcurses
import Foundation
import Synchronization

/// Set by SIGINT/SIGTERM while the dashboard runs; the frame loop checks it.
let interruptRequested = Atomic<Bool>(false)

/// The ncursesw screen. Every call must come from the one dashboard thread (ncurses is not
/// thread-safe); nothing else may write to the terminal while it is open.
final class CursesScreen {
  private let screen: OpaquePointer
  private let window: UnsafeMutablePointer<WINDOW>
  let colors: Bool
  private var attrs: [Style: Int32] = [:]

  /// Whether the dashboard can draw here: stdin and stdout are terminals and TERM is usable.
  static func usable(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
    guard isatty(0) == 1, isatty(1) == 1 else { return false }
    guard let term = environment["TERM"], !term.isEmpty, term != "dumb", term != "unknown" else { return false }
    return true
  }

  /// Opens the screen; nil when `newterm` fails (unknown TERM).
  init?(wantColors: Bool) {
    _ = sotto_setlocale_all()
    guard let screen = newterm(nil, sotto_stdout(), sotto_stdin()) else { return nil }
    self.screen = screen
    _ = set_term(screen)
    guard let window = sotto_stdscr() else {
      endwin()
      delscreen(screen)
      return nil
    }
    self.window = window
    cbreak()
    noecho()
    nonl()
    keypad(window, true)
    _ = curs_set(0)
    set_escdelay(25)
    var useColors = false
    if wantColors, has_colors() {
      start_color()
      use_default_colors()
      useColors = true
    }
    colors = useColors
    setupAttributes()
  }

  private func setupAttributes() {
    let bold = sotto_a_bold()
    let rev = sotto_a_reverse()
    let ul = sotto_a_underline()
    let dim = sotto_a_dim()
    if colors {
      let pairs: [(Int16, Int16, Int16)] = [
        (1, Int16(COLOR_BLACK), Int16(COLOR_CYAN)), (2, Int16(COLOR_GREEN), -1), (3, Int16(COLOR_YELLOW), -1),
        (4, Int16(COLOR_RED), -1), (5, Int16(COLOR_BLUE), -1), (6, Int16(COLOR_WHITE), Int16(COLOR_BLUE)),
        (7, Int16(COLOR_BLACK), Int16(COLOR_YELLOW)), (8, Int16(COLOR_CYAN), -1),
        (9, Int16(COLOR_BLACK), Int16(COLOR_GREEN)),
        (10, Int16(COLOR_WHITE), Int16(COLOR_RED)),
      ]
      for (n, f, b) in pairs { init_pair(n, f, b) }
      func p(_ n: Int32) -> Int32 { sotto_color_pair(n) }
      attrs = [
        .normal: sotto_a_normal(), .header: p(1), .title: p(6) | bold, .tab: sotto_a_normal(), .activeTab: p(9) | bold,
        .good: p(2), .warn: p(3), .bad: p(4) | bold, .dim: p(8), .selected: rev | bold, .leak: p(10) | bold,
        .badge: p(7) | bold, .key: p(8) | bold, .prompt: p(3) | bold,
      ]
    } else {
      attrs = [
        .normal: sotto_a_normal(), .header: rev, .title: bold | ul, .tab: sotto_a_normal(), .activeTab: rev | bold,
        .good: sotto_a_normal(), .warn: bold, .bad: bold, .dim: dim, .selected: rev, .leak: bold | ul,
        .badge: rev | bold,
        .key: bold, .prompt: bold,
      ]
    }
  }

  var size: (width: Int, height: Int) { (Int(getmaxx(window)), Int(getmaxy(window))) }

  /// Follows a size change even when no SIGWINCH reached ncurses (checked once per frame).
  func syncSize() {
    var rows: Int32 = 0
    var cols: Int32 = 0
    guard sotto_tty_size(&rows, &cols) == 0 else { return }
    if Int(rows) != size.height || Int(cols) != size.width {
      resizeterm(rows, cols)
      clearok(window, true)
    }
  }

  /// Paints the frame without flicker (erase, draw, one `doupdate`).
  func draw(_ lines: [Line]) {
    let (w, h) = size
    werase(window)
    for (y, line) in lines.prefix(h).enumerated() {
      // The bottom-right cell would scroll the screen: leave it out.
      let fitted = line.fitted(y == h - 1 ? w - 1 : w)
      var x = 0
      for seg in fitted.segments where !seg.text.isEmpty {
        wattrset(window, attrs[seg.style] ?? 0)
        mvwaddstr(window, Int32(y), Int32(x), seg.text)
        x += Format.width(seg.text)
      }
    }
    wattrset(window, 0)
    wnoutrefresh(window)
    doupdate()
  }

  /// Waits up to `timeoutMs` for a key; nil on timeout.
  func read(timeoutMs: Int) -> Key?? {
    wtimeout(window, Int32(max(0, timeoutMs)))
    var ch: wint_t = 0
    let rc = wget_wch(window, &ch)
    if rc == ERR { return .none }
    if rc == sotto_key_code_yes() {
      switch Int32(ch) {
      case KEY_UP: return .some(.up)
      case KEY_DOWN: return .some(.down)
      case KEY_LEFT: return .some(.left)
      case KEY_RIGHT: return .some(.right)
      case KEY_PPAGE: return .some(.pageUp)
      case KEY_NPAGE: return .some(.pageDown)
      case KEY_HOME: return .some(.home)
      case KEY_END: return .some(.end)
      case KEY_ENTER: return .some(.enter)
      case KEY_BTAB: return .some(.backTab)
      case KEY_BACKSPACE, KEY_DC: return .some(.backspace)
      case KEY_RESIZE: return .some(.resize)
      default: return .some(nil)
      }
    }
    switch ch {
    case 3: return .some(.interrupt)
    case 9: return .some(.tab)
    case 10, 13: return .some(.enter)
    case 27: return .some(.escape)
    case 8, 127: return .some(.backspace)
    default:
      guard ch >= 32, let scalar = Unicode.Scalar(UInt32(ch)) else { return .some(nil) }
      return .some(.char(Character(scalar)))
    }
  }

  /// Restores the terminal.
  func end() {
    _ = curs_set(1)
    endwin()
    delscreen(screen)
  }
}

#!/usr/bin/env python3
"""Screenshots of the real dashboard: `sotto demo` (the built-in loopback hierarchy with
synthetic load) in tmux, captured with colors (`tmux capture-pane -e -p`), replayed into pyte
and drawn with Pillow in DejaVu Sans Mono.  Usage: scripts/screenshots.py OUTDIR
(make screenshots).  Needs no root and no lab; kills only the tmux server it created.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))

import pyte  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

COLS, ROWS = 120, 36
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SIZE = 15
BG = (24, 26, 33)
FG = (214, 218, 224)
PALETTE = {
    "black": (40, 42, 54), "red": (232, 85, 85), "green": (98, 196, 120), "brown": (229, 192, 91),
    "yellow": (229, 192, 91), "blue": (70, 110, 190), "magenta": (190, 120, 220), "cyan": (90, 190, 210),
    "white": (224, 226, 230), "brightblack": (110, 112, 120), "brightred": (255, 110, 110),
    "brightgreen": (130, 230, 150), "brightyellow": (255, 220, 120), "brightblue": (110, 150, 230),
    "brightmagenta": (220, 150, 240), "brightcyan": (130, 220, 240), "brightwhite": (255, 255, 255),
}


def color(name: str, default):
    if name == "default":
        return default
    if name in PALETTE:
        return PALETTE[name]
    if len(name) == 6:
        try:
            return tuple(int(name[i:i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            pass
    return default


def render(ansi: str, path: Path) -> None:
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.Stream(screen)
    text = ansi.rstrip("\n").replace("\r\n", "\n").replace("\n", "\r\n")
    stream.feed(text)
    font = ImageFont.truetype(FONT, SIZE)
    bold = ImageFont.truetype(FONT_BOLD, SIZE)
    cw = int(round(font.getlength("M")))
    ch = int(SIZE * 1.35)
    pad = 12
    img = Image.new("RGB", (COLS * cw + 2 * pad, ROWS * ch + 2 * pad), BG)
    d = ImageDraw.Draw(img)
    for y in range(ROWS):
        line = screen.buffer[y]
        for x in range(COLS):
            c = line[x]
            fg = color(c.fg, FG)
            bg = color(c.bg, BG)
            if c.reverse:
                fg, bg = (bg if bg != BG else BG), (fg if c.fg != "default" else FG)
            if c.bold and c.fg in PALETTE and "bright" + c.fg in PALETTE and not c.reverse:
                fg = PALETTE["bright" + c.fg]
            x0, y0 = pad + x * cw, pad + y * ch
            if bg != BG:
                d.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], fill=bg)
            ch_ = c.data
            if not ch_ or ch_ == " ":
                continue
            if draw_special(d, ch_, x0, y0, cw, ch, fg, bg):
                continue
            d.text((x0, y0 + 2), ch_, font=bold if c.bold else font, fill=fg)
            if c.underscore:
                d.line([x0, y0 + ch - 2, x0 + cw - 1, y0 + ch - 2], fill=fg)
    img.save(path)


BLOCKS = "▁▂▃▄▅▆▇█"


def draw_special(d, c, x0, y0, cw, ch, fg, bg) -> bool:
    """Box-drawing and block characters as rectangles so that lines and bars join."""
    if c in BLOCKS:
        h = int(ch * (BLOCKS.index(c) + 1) / 8)
        d.rectangle([x0, y0 + ch - h, x0 + cw - 1, y0 + ch - 1], fill=fg)
        return True
    if c == "░":
        shade = tuple((a + b * 3) // 4 for a, b in zip(fg, bg))
        d.rectangle([x0, y0 + 2, x0 + cw - 1, y0 + ch - 3], fill=shade)
        return True
    mx, my = x0 + cw // 2, y0 + ch // 2
    segs = {"─": "lr", "│": "ud", "┌": "rd", "┐": "ld", "└": "ru", "┘": "lu", "├": "udr", "┤": "udl"}.get(c)
    if segs is None:
        return False
    if "l" in segs:
        d.line([x0, my, mx, my], fill=fg)
    if "r" in segs:
        d.line([mx, my, x0 + cw, my], fill=fg)
    if "u" in segs:
        d.line([mx, y0, mx, my], fill=fg)
    if "d" in segs:
        d.line([mx, my, mx, y0 + ch], fill=fg)
    return True


class Tmux:
    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout

    def wait_for(self, needle: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self("capture-pane", "-t", "s", "-p"):
                return
            time.sleep(0.05)
        raise SystemExit(f"screenshots: timed out waiting for {needle!r}")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out = out if out.is_absolute() else REPO / out
    out.mkdir(parents=True, exist_ok=True)
    sotto = os.environ.get("SOTTO_BIN", str(REPO / ".build/debug/sotto"))
    t = Tmux(f"sotto-shots-{os.getpid()}")
    try:
        cmd = [sotto, "demo", "--rate", "8", "--log-file", "/tmp/sotto-screenshots.log"]
        t("-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", str(COLS), "-y", str(ROWS), "-e", "LANG=C.UTF-8",
          "-e", "TERM=xterm-256color", " ".join(shlex.quote(c) for c in cmd))
        t.wait_for("1 Servers")
        time.sleep(12)  # let the synthetic load go round the zones a few times

        def shot(name: str, *keys: str, wait: str) -> None:
            if keys:
                t("send-keys", "-t", "s", *keys)
            t.wait_for(wait)
            time.sleep(0.4)
            render(t("capture-pane", "-t", "s", "-p", "-e", "-N"), out / f"{name}.png")
            print(f"wrote {out / (name + '.png')}")

        shot("servers", "1", "j", "j", "j", "j", "j", "j", "j", "j", wait="PROBES")
        shot("detail", "Enter", wait="History, newest first")
        shot("queries", "Escape", "2", wait="LATENCY")
        shot("privacy", "3", wait="leak meter")
        t("send-keys", "-t", "s", "l")
        t.wait_for("lookup NAME")
        t("send-keys", "-t", "s", "-l", "alias.both.test A")
        shot("lookup", "Enter", wait="ANSWER")
        shot("help", "?", wait="Keys")
        t("send-keys", "-t", "s", "Escape", "q")
    finally:
        subprocess.run(["tmux", "-L", t.name, "kill-server"], capture_output=True)
        Path(f"/tmp/tmux-{os.getuid()}/{t.name}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()

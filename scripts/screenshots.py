#!/usr/bin/env python3
"""Screenshots of the real dashboard: `sotto top` in tmux against the lab, with traffic,
captured with colors (`tmux capture-pane -e -p`), replayed into pyte and drawn with Pillow
in DejaVu Sans Mono.  Usage: scripts/screenshots.py OUTDIR  (make screenshots).

Starts the lab unless it is already up (retrying while another run holds it) and stops it
again only if it started it; kills only the tmux server it created.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Lab"))
sys.path.insert(0, str(REPO / "Tests" / "Integration"))

import lab as labmod  # noqa: E402

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


def dig(port: int, name: str, qtype: str = "A") -> None:
    subprocess.run(["dig", "+time=3", "+tries=1", "-p", str(port), "@127.0.0.1", name, qtype], capture_output=True,
                   timeout=15)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out = out if out.is_absolute() else REPO / out
    out.mkdir(parents=True, exist_ok=True)
    sotto = os.environ.get("SOTTO_BIN", str(REPO / ".build/debug/sotto"))
    lab = labmod.Lab(port=53, with_ipv6=True)
    started_lab = False
    if len(lab.running()) < len(lab.instances):
        for attempt in range(30):
            try:
                lab.cleanup_stale()
                lab.check_prerequisites()
                lab.start()
                started_lab = True
                break
            except labmod.LabError as e:
                print(f"lab busy or not ready ({e}); retrying in 10 s", file=sys.stderr)
                time.sleep(10)
        else:
            raise SystemExit("screenshots: the lab did not come up")
    port = labmod.free_port("127.0.0.1")
    t = Tmux(f"sotto-shots-{os.getpid()}")
    try:
        cmd = [sotto, "top", "--root-hints", str(labmod.ROOT_HINTS), "--allow-loopback", "--listen",
               f"127.0.0.1:{port}", "--tls-ca-file", str(labmod.CA_FILE), "--probe-timeout", "1",
               "--log-file", "/tmp/sotto-screenshots.log"]
        t("-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", str(COLS), "-y", str(ROWS), "-e", "LANG=C.UTF-8",
          "-e", "TERM=xterm-256color", " ".join(shlex.quote(c) for c in cmd))
        t.wait_for("1 Servers")
        names = ["www.example.test", "www.dot.test", "www.badcert.test", "www.refused.test", "www.silent.test",
                 "www.mixed.test", "nope.example.test", "mail.example.test", "alias.example.test", "www.doq.test",
                 "www.both.test", "www.quicsilent.test"]
        for n in names:
            dig(port, n)
        time.sleep(1.6)
        for i in range(1, 7):
            for z in ("dot", "refused", "silent", "mixed", "badcert", "doq", "both"):
                dig(port, f"h{i}.{z}.test")
        dig(port, "www.example.test", "AAAA")
        time.sleep(0.6)

        def shot(name: str, *keys: str, wait: str) -> None:
            if keys:
                t("send-keys", "-t", "s", *keys)
            t.wait_for(wait)
            time.sleep(0.4)
            render(t("capture-pane", "-t", "s", "-p", "-e", "-N"), out / f"{name}.png")
            print(f"wrote {out / (name + '.png')}")

        shot("servers", "1", "j", "j", "j", wait="PROBES")
        shot("detail", "j", "j", "j", "Enter", wait="next query goes")
        shot("queries", "Escape", "2", wait="LATENCY")
        shot("privacy", "3", wait="leak meter")
        t("send-keys", "-t", "s", "l")
        t.wait_for("lookup NAME")
        t("send-keys", "-t", "s", "-l", "example.test MX")
        shot("lookup", "Enter", wait="ANSWER")
        shot("help", "?", wait="Keys")
        t("send-keys", "-t", "s", "q")
    finally:
        subprocess.run(["tmux", "-L", t.name, "kill-server"], capture_output=True)
        Path(f"/tmp/tmux-{os.getuid()}/{t.name}").unlink(missing_ok=True)
        if started_lab:
            lab.stop()


if __name__ == "__main__":
    main()

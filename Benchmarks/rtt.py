"""A round-trip time between the resolvers and the lab, for the bench's `rtt` benchmark.

On loopback an upstream exchange takes tens of microseconds, so the cold benchmarks weigh the
resolver's CPU time, and encryption's cost there is mostly the cost of TLS and QUIC records. Real
authoritative servers are milliseconds away. This kernel has no netem (no sch_netem, no sch_fq),
so the delay is made in user space: `rtt_link.c` copies IP packets between two TUN devices after
a fixed delay, both ways.

`RTTLink(rtt_ms, work)` builds it (cc, or the Swift toolchain's clang), creates a network namespace of its own with one TUN
device in it, routes the lab's addresses (127.53.0.0/16) from there through the link to this
namespace, where the lab listens, and back. `with link.inside():` runs the block in that
namespace (this thread's sockets and the processes it starts): a resolver and its load started
there reach the lab only through the delay, every packet, TCP and TLS handshakes included. All of
it goes when the link stops (the devices with the process, the namespace deleted). Root only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLONE_NEWNET = 0x40000000
LAB_NET = "127.53.0.0/16"
# The resolvers' side of the link: an address that exists only inside the namespace.
CLIENT_ADDRESS = "10.253.53.2"
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _run(*cmd: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


def _ip(*args: str, netns: str | None = None) -> None:
    _run("ip", *(["-n", netns] if netns else []), *args)


def _sysctl(key: str, value: str, netns: str | None = None) -> None:
    _run(*(["ip", "netns", "exec", netns] if netns else []), "sysctl", "-qw", f"{key}={value}")


class RTTLink:
    """The lab `rtt_ms` away (half each way) from a network namespace of its own."""

    def __init__(self, rtt_ms: float, work: Path):
        self.rtt_ms = rtt_ms
        self.work = work
        tag = f"{os.getpid() % 100000}"
        self.netns = f"sotto-rtt-{tag}"
        self.client_dev, self.lab_dev = f"srttc{tag}", f"srtts{tag}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RTTLink":
        if os.geteuid() != 0:
            raise RuntimeError("the rtt benchmark needs root (a network namespace and TUN devices)")
        self.work.mkdir(parents=True, exist_ok=True)
        binary = self.work / "rtt_link"
        compiler = next((c for c in ("cc", "clang", "gcc") if shutil.which(c)), None)
        if compiler is None:
            raise RuntimeError("no C compiler (cc, clang or gcc) to build rtt_link.c")
        subprocess.run([compiler, "-O2", "-Wall", "-o", str(binary), str(HERE / "rtt_link.c")], check=True)
        _ip("netns", "add", self.netns)
        try:
            self.proc = subprocess.Popen([str(binary), self.client_dev, self.lab_dev, str(int(self.rtt_ms * 500))],
                                         stdout=subprocess.PIPE, stderr=open(self.work / "rtt_link.log", "w"),
                                         text=True)
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"rtt_link did not start: {(self.work / 'rtt_link.log').read_text()[-500:]}")
            # The resolvers' side: its own loopback for their listeners and the load, the lab's
            # addresses through the link (more specific than the namespace's own 127.0.0.0/8;
            # route_localnet lets loopback destinations leave through a device that is not lo).
            _ip("link", "set", self.client_dev, "netns", self.netns)
            _ip("link", "set", "lo", "up", netns=self.netns)
            _ip("addr", "add", f"{CLIENT_ADDRESS}/32", "dev", self.client_dev, netns=self.netns)
            _ip("link", "set", self.client_dev, "up", netns=self.netns)
            _sysctl(f"net.ipv4.conf.{self.client_dev}.route_localnet", "1", netns=self.netns)
            _ip("route", "add", LAB_NET, "dev", self.client_dev, "src", CLIENT_ADDRESS, "table", "local",
                netns=self.netns)
            # The lab's side, in this namespace: packets to the lab's loopback addresses arrive on
            # a device that is not lo (route_localnet again); answers to the client address go
            # back through it. Both go with the device when rtt_link exits.
            _ip("link", "set", self.lab_dev, "up")
            _sysctl(f"net.ipv4.conf.{self.lab_dev}.route_localnet", "1")
            _ip("route", "add", f"{CLIENT_ADDRESS}/32", "dev", self.lab_dev)
        except BaseException:
            self.stop()
            raise
        return self

    @contextlib.contextmanager
    def inside(self):
        """Runs the block with this thread in the link's namespace (sockets it opens, processes it
        starts), and back in this one after."""
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(f"/var/run/netns/{self.netns}")
            try:
                yield
            finally:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the lab's namespace")
        finally:
            os.close(fd)

    def stop(self) -> str:
        """Stops the link; its count of packets passed and dropped each way."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        log = self.work / "rtt_link.log"
        return log.read_text().strip() if log.exists() else ""

    def __enter__(self) -> "RTTLink":
        return self.start()

    def __exit__(self, *exc) -> None:
        print(f"  {self.stop()}", flush=True)

"""Fixtures for the integration tests.

Under CI=true every missing prerequisite (nsd, unbound, dig, root, a busy port,
IPv6 on ::1, the sotto binary) is a failure, never a skip.  Outside CI it is a
skip that names the reason (shown by -ra).  The lab fixture cleans NSDs left
over by a crashed run (by pidfile), starts from scratch, and stops exactly the
pids it started.
"""

from __future__ import annotations

import os
import shutil

import pytest

from capture import Capture, CaptureError
from harness import CI, HALFMUTE, MUTE, MuteServer, Sotto, labmod, require, sotto_path


def _tool(name: str) -> bool:
    return shutil.which(name) is not None or labmod._which(name) is not None


@pytest.fixture(scope="module")
def lab():
    for tool, pkg in (("nsd", "nsd"), ("nsd-control", "nsd"), ("dig", "dnsutils")):
        require(_tool(tool), f"{tool} not installed (apt-get install {pkg})")
    port = labmod.lab_port()
    require(port == 53, f"LAB_PORT={port}: resolvers can only reach the lab on port 53 (root hints carry no port)")
    require(os.geteuid() == 0, "the lab binds port 53 on 127.53.x.y and ::1: run as root")
    require(labmod.ipv6_loopback_usable(), "IPv6 on ::1 is not usable (v6.test. needs it)")
    L = labmod.Lab(port=port, with_ipv6=True)
    L.cleanup_stale()
    try:
        L.check_prerequisites()
    except labmod.LabError as e:
        require(False, str(e))
    try:
        L.start()
    except labmod.LabError as e:
        pytest.fail(f"lab failed to start: {e}", pytrace=False)
    yield L
    L.stop()
    left = L.leftover_pids()
    assert not left, f"lab NSD processes still running after stop: {left}"


@pytest.fixture(scope="module")
def unbound(lab):
    require(_tool("unbound"), "unbound not installed (apt-get install unbound)")
    try:
        u = lab.unbound()
    except labmod.LabError as e:
        pytest.fail(f"Unbound failed to start against the lab: {e}", pytrace=False)
    yield u
    u.stop()


@pytest.fixture
def sotto():
    path = sotto_path()
    require(path.is_file() and os.access(path, os.X_OK),
            f"sotto binary not found at {path} (run `make build` or set SOTTO_BIN)")
    return Sotto(path)


@pytest.fixture
def capture(tmp_path):
    """Factory: capture(name="lo") starts tcpdump on lo filtered to 127.53.0.0/16 and
    returns the running Capture once it provably captures; call .stop() to parse.
    Every capture still running at the end of the test is stopped."""
    require(Capture.tcpdump() is not None, "tcpdump not installed (apt-get install tcpdump)")
    require(os.geteuid() == 0, "capturing on lo needs root")
    started: list[Capture] = []

    def start(name: str = "lo") -> Capture:
        cap = Capture(tmp_path / f"{name}.pcap")
        try:
            cap.start()
        except CaptureError as e:
            pytest.fail(f"packet capture failed: {e}", pytrace=False)
        started.append(cap)
        return cap

    yield start
    for cap in started:
        cap.stop()
    # A test's verdict on what crossed the wire is only as good as a capture that saw every packet.
    lost = {cap.path.name: cap.dropped for cap in started if cap.dropped}
    if lost:
        pytest.fail(f"tcpdump dropped packets ({lost}): the test's wire assertions are unreliable", pytrace=False)


@pytest.fixture
def free_port():
    return labmod.free_port("127.0.0.1")


def pytest_report_header(config):
    return [f"sotto: {sotto_path()}  CI={'true' if CI else 'false'}"]


@pytest.fixture
def mute(lab):
    """mute.test.'s silent server (harness.MuteServer), closed after the test."""
    require(os.geteuid() == 0, "binding port 53 on 127.53.40.1 needs root")
    try:
        server = MuteServer()
    except OSError as e:
        require(False, f"cannot bind {MUTE}:53 for the silent server: {e}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def halfmute(lab):
    """halfmute.test.'s two silent servers (harness.MuteServer on HALFMUTE), closed after the test."""
    require(os.geteuid() == 0, f"binding port 53 on {' and '.join(HALFMUTE)} needs root")
    servers = []
    try:
        for address in HALFMUTE:
            try:
                servers.append(MuteServer(address))
            except OSError as e:
                require(False, f"cannot bind {address}:53 for a silent server: {e}")
        yield servers
    finally:
        for s in servers:
            s.close()

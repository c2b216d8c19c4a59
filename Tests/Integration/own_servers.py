"""Authoritative servers a test starts for itself, outside the shared lab: NSD (Debian) serving a
root zone whose wildcard answers every name, and the certificate it or Lab/doq_server.py presents.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

WILDCARD_ANSWER = "192.0.2.80"


def root_zone(ns_address: str) -> str:
    """A root zone served from `ns_address`: `ns.` is its server, every other name answers A
    (q0. to q9. and p0. to p9. spelt out, for servers without wildcards: Lab/doq_server.py)."""
    names = "".join(f"{c}{i}.    IN A   {WILDCARD_ANSWER}\n" for c in "qp" for i in range(10))
    return f"""$TTL 60
.      IN SOA ns. hostmaster. 1 3600 600 86400 60
.      IN NS  ns.
ns.    IN A   {ns_address}
*.     IN A   {WILDCARD_ANSWER}
{names}"""


def root_hints(tmp: Path, ns_address: str) -> Path:
    hints = tmp / "root.hints"
    hints.write_text(f".  3600000 NS ns.\nns. 3600000 A {ns_address}\n")
    return hints


def self_signed(tmp: Path, name: str = "ns.") -> tuple[Path, Path]:
    """A P-256 key and a self-signed certificate for `name` (opportunistic: never verified)."""
    key, pem = tmp / "server.key", tmp / "server.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(pem), "-days", "2", "-subj", f"/CN={name}"],
                   check=True, capture_output=True, timeout=30)
    return key, pem


def nsd_root(tmp: Path, address: str, dot: bool, tcp_timeout: int | None = None) -> Path:
    """Writes an NSD config (and the root zone) for `address`: Do53, and DoT on 853 when `dot`.
    Returns the config; run it with `nsd -d -c CONF`."""
    zone = tmp / "root.zone"
    zone.write_text(root_zone(address))
    tls = ""
    if dot:
        key, pem = self_signed(tmp)
        tls = f"""    ip-address: {address}@853
    tls-port: 853
    tls-service-key: "{key}"
    tls-service-pem: "{pem}"
"""
    conf = tmp / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: {address}@53
{tls}    do-ip6: no
    username: ""
    chroot: ""
    database: ""
    zonelistfile: "{tmp}/zone.list"
    xfrdfile: "{tmp}/xfrd.state"
    xfrdir: "{tmp}"
    pidfile: "{tmp}/nsd.pid"
    zonesdir: "{tmp}"
{f"    tcp-timeout: {tcp_timeout}" + chr(10) if tcp_timeout else ""}    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "."
    zonefile: "{zone}"
""")
    return conf

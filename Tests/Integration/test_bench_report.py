"""`make bench`'s report after the table, over a raw record shaped like a full run's.

The full run of 2026-12-03 08:20 crashed in this code after its table, before writing its JSON:
the dashboard section is one summary dict, not rounds per resolver. No lab needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Benchmarks"))

import bench  # noqa: E402


def full_run(overdue: int = 0) -> dict:
    def rows(**extra):
        return [{"qps": 100000.0 + r, "overdue": 0, **extra} for r in range(3)]

    raw = {name: {"sotto": rows(), "unbound": rows(), "pdns-recursor": rows()}
           for name in ("cached", "cold", "memory", "encryption")}
    raw["startup"] = {"sotto": [{"startup_ms": 30.0}] * 3, "unbound": [{"startup_ms": 48.0}] * 3}
    # As dashboard_cost.py writes it: scalars, and "rounds" a list of numbers.
    raw["dashboard"] = {"qps_target": 1000, "seconds": 10, "rounds": [1.0, 0.9, 1.1],
                        "dashboard_cost_percent": 1.0, "pass": True, "dashboard_thread_percent": 0.5}
    raw["cold"]["sotto"][1]["overdue"] = overdue
    return raw


def test_a_full_runs_record_reports_no_overdue_answers():
    line = bench.overdue_report(full_run())
    assert line.endswith("none in any round"), line


def test_an_overdue_round_is_named():
    line = bench.overdue_report(full_run(overdue=2))
    assert line.endswith("cold round 2 sotto: 2"), line


def test_targets_and_diagnostics_accept_a_full_runs_record():
    raw = full_run()
    raw["cached"]["unbound"] = [{"qps": 110000.0}, {"qps": 90000.0}, {"qps": 100000.0}]
    cached = next(t for t in bench.targets(raw) if t["target"] == "cached q/s, Sotto / Unbound")
    assert cached["met_rounds"] == 2 and cached["verdict"] == "mixed", cached
    assert isinstance(bench.diagnostics(raw), list)


def test_cached_rows_give_each_resolvers_median_and_spread():
    """The cached, DoT and TCP benchmarks' three table rows: queries/s (higher is better), latency
    and CPU per query (lower), each resolver's median with its min and max over the rounds."""
    results = {"sotto": [{"qps": q, "avg_latency_ms": 0.2, "cpu_per_kquery_ms": 2.5} for q in (380e3, 400e3, 360e3)],
               "unbound": [{"qps": q, "avg_latency_ms": 1.4, "cpu_per_kquery_ms": 14.0} for q in (70e3, 64e3, 71e3)]}
    rows = bench.cached_rows("cached TCP", results)
    assert [(r[0], r[1], r[3]) for r in rows] == [("cached TCP", "queries/s", "higher"),
                                                  ("cached TCP", "avg latency ms", "lower"),
                                                  ("cached TCP", "CPU µs/query", "lower")]
    assert rows[0][2] == {"sotto": (380e3, 360e3, 400e3), "unbound": (70e3, 64e3, 71e3)}, rows[0][2]


def test_deadzone_rows_give_each_resolvers_median_and_a_round_without_answers_none():
    """The dead-zone benchmark's rows: SERVFAIL latency, unanswered queries, queries to the
    silent server and CPU, each resolver's median over its rounds; a round in which nothing was
    answered has no latency and leaves it out instead of failing the report."""
    results = {"sotto": [{"p50_ms": p, "p95_ms": 1.0, "lost": 0, "dead_server_queries": 2, "cpu_us_per_query": 40.0}
                         for p in (0.5, 0.6, 0.4)],
               "unbound": [{"p50_ms": None, "p95_ms": None, "lost": 400, "dead_server_queries": 21,
                            "cpu_us_per_query": 30.0},
                           {"p50_ms": 0.13, "p95_ms": 0.2, "lost": 20, "dead_server_queries": 19,
                            "cpu_us_per_query": 25.0}]}
    rows = bench.deadzone_rows(results)
    assert [r[1] for r in rows] == ["SERVFAIL p50 ms", "SERVFAIL p95 ms", "unanswered after 15 s",
                                    "queries to the dead server", "CPU µs/query"]
    assert all(r[0] == "dead zone" and r[3] == "lower" for r in rows), rows
    assert rows[0][2] == {"sotto": (0.5, 0.4, 0.6), "unbound": (0.13, 0.13, 0.13)}, rows[0][2]
    assert rows[2][2]["unbound"] == (210, 20, 400) and rows[3][2]["sotto"] == (2, 2, 2), rows
    bench.print_table(rows)  # zero medians (no query lost) print without a ratio, not a crash

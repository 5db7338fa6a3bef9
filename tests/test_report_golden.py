"""report.md byte for byte against reports kept under tests/report_golden/.

The expected files were written by the report code before it was split into one function per
section; a change to the report's text must show up here as a diff of those files. Only the two
things that differ between runs are normalised: the store's folder and the generation time.
Regenerate (after a deliberate change of the text) with LBBENCH_REGEN_REPORT_GOLDEN=1.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lbbench.results.report import write_report

from synth_store import write_part, write_store

GOLDEN = Path(__file__).parent / "report_golden"
REGEN = os.environ.get("LBBENCH_REGEN_REPORT_GOLDEN") == "1"


def _faults_and_instability(out: Path):
    """extra_columns for write_store: fault counters on every run, one fault event per run in
    faults/, and two runs flagged unstable (round_robin at rho 0.8, seeds 0 and 1)."""
    def extra(row):
        s, rho = row["seed"], row["rho"]
        k = int(round(10 * rho)) + s + len(row["strategy"]) % 3
        write_part(out, "faults", row["run_id"], pl.DataFrame({
            "run_hash": [row["run_hash"]] * 2, "run_id": [row["run_id"]] * 2, "time": [2.0, 6.0],
            "kind": ["node_down", "node_up"], "target": ["node 1", "node 1"]}))
        return {"faults": 2, "failed": k, "retried": 2 * k, "timed_out": k // 2,
                "availability": 1.0 - k / 4000, "recovery_s": float("nan") if s == 2 else 0.5 + 0.1 * k,
                "stable": not (row["strategy"] == "round_robin" and rho == 0.8 and s < 2)}
    return extra


def _full(out: Path):
    write_store(out, seeds=range(3), extra_columns=_faults_and_instability(out))


def _no_baseline(out: Path):
    write_store(out, strategies=("least_load", "power_of_d"), seeds=range(3), speeds=([1.0, 1.0],),
                timeseries=False, n_failed=0)


def _variants_runs_only(out: Path):
    write_store(out, seeds=range(2), speeds={"equal": [1.0, 1.0], "slow-node": [1.0, 0.5]}, n_failed=3,
                timeseries=False)
    for t in ("tasks", "histograms"):
        for p in (out / t).glob("*.parquet"):
            p.unlink()
        (out / t).rmdir()
    (out / "manifest.json").unlink()


def _all_failed(out: Path):
    write_store(out, seeds=range(0), n_failed=2)


STORES = {"full": _full, "no_baseline": _no_baseline, "variants_runs_only": _variants_runs_only,
          "all_failed": _all_failed}


def _normalise(md: str, out: Path) -> str:
    md = md.replace(str(out), "<DIR>")
    return re.sub(r" on \d{4}-\d\d-\d\d \d\d:\d\d UTC", " on <NOW>", md, count=1)


@pytest.mark.parametrize("name", sorted(STORES))
def test_report_text_is_unchanged(tmp_path, name):
    out = tmp_path / "store"
    out.mkdir()
    STORES[name](out)
    md_path, pngs = write_report(out)
    md = _normalise(md_path.read_text(), out)
    expected = GOLDEN / f"{name}.md"
    if REGEN:
        expected.write_text(md)
    assert md == expected.read_text()
    # the figures listed at the end of the report are the files written, and no others
    assert sorted(p.relative_to(out).as_posix() for p in pngs) == sorted(
        p.relative_to(out).as_posix() for p in out.glob("figures/*.png"))
    assert sorted(re.findall(r"^- \[[^\]]+\]\((figures/[^)]+)\)$", md, re.M)) == sorted(
        p.relative_to(out).as_posix() for p in pngs)


def test_golden_reports_cover_every_section():
    """The fixtures exercise each section's branches, so the comparison above means something."""
    text = {p.stem: p.read_text() for p in GOLDEN.glob("*.md")}
    assert sorted(text) == sorted(STORES)
    full = text["full"]
    for needle in ("## Failed runs", "## Latency by strategy and load", "*Pooled p99*", "never reached a steady state",
                   "unstable (2/3 runs)", "## Failures and recovery", "## Comparison with round_robin",
                   "round_robin unstable", "## Per-task utilisation", "## Time series", "## Sweep file",
                   "## Figures", "### cluster.speeds=[1, 2]"):
        assert needle in full, needle
    assert "No `round_robin` runs" in text["no_baseline"] and "No timeseries/ table" in text["no_baseline"]
    assert "No tasks/ table" in text["variants_runs_only"] and "### variant=slow-node" in text["variants_runs_only"]
    assert "No successful runs" in text["all_failed"]
    assert np.all([t.count("<NOW>") == 1 for t in text.values()])

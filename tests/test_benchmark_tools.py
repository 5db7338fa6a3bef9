"""The performance suite's regression check (benchmarks/perf/figures.py --compare): what it
flags, on tables built here (the timings themselves are not part of the test run)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

PERF = Path(__file__).resolve().parents[1] / "benchmarks" / "perf"
sys.path.insert(0, str(PERF))

from figures import TOLERANCE, regressions  # noqa: E402


def _table(**ratios):
    return [{"strategy": s, "floor_ns": 10.0, "lbbench_ns": 10.0 * r, "ratio": r, "ratio_range": [r, r]}
            for s, r in ratios.items()]


def test_a_ratio_more_than_ten_percent_above_the_record_is_flagged():
    record = {"rows": _table(round_robin=1.30, least_load=1.22)}
    assert TOLERANCE == 0.10
    assert regressions(record, _table(round_robin=1.44, least_load=1.22)) == ["round_robin"]
    assert regressions(record, _table(round_robin=1.30, least_load=1.35)) == ["least_load"]
    assert regressions(record, _table(round_robin=1.50, least_load=1.40)) == ["round_robin", "least_load"]


def test_a_ratio_within_ten_percent_or_better_is_not_flagged():
    record = {"rows": _table(round_robin=1.30, least_load=1.22)}
    assert regressions(record, _table(round_robin=1.42, least_load=1.34)) == []
    assert regressions(record, _table(round_robin=1.10, least_load=1.00)) == []


def test_strategies_missing_from_either_side_are_not_compared():
    record = {"rows": _table(round_robin=1.30)}
    assert regressions(record, _table(round_robin=1.31, power_of_d=9.0)) == []
    assert regressions({"rows": _table(round_robin=1.30, random=1.2)}, _table(round_robin=2.0)) == ["round_robin"]


def test_the_committed_record_can_be_compared_against():
    """recorded.json has what --compare reads: a row per strategy the floors cover, the CPU."""
    from floors import FLOORS

    record = json.loads((PERF / "recorded.json").read_text())
    assert [r["strategy"] for r in record["rows"]] == list(FLOORS)
    assert record["cpu"]
    for r in record["rows"]:
        assert r["ratio"] > 0 and r["ratio_range"][0] <= r["ratio"] <= r["ratio_range"][1]
    assert regressions(record, record["rows"]) == []

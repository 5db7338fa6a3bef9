"""Same seed, same results: every built-in preset x strategy gives the recorded summary.

The record (tests/golden/summaries.json, written by tests/golden/record.py) is the engine's
output before a change; a change that alters any recorded column for an unchanged scenario
fails here and has to be named where it is made, with the record re-written.

Each case compiles its strategy's kernel (with faults for `failover`, a closed loop for
`closed-loop`), which the rest of the suite does for round_robin and least_load on every
switch set and for random without faults or a closed loop only; compiling another would add
about 10 s to a run on an empty cache. So the suite checks round_robin and least_load on every
preset and random on the presets of its kernels, and LBBENCH_GOLDEN=all checks every recorded
case (every preset x strategy).

Bit-identity holds on the machine that recorded a case. Across machines the last bits of a few
float columns can differ: shared-nodes/maglev, power_of_d and ring_hash, recorded on a 2-vCPU
AMD EPYC machine, differ in their last bits (about 1e-16 relative: imbalance_cov, latency_mean,
util_max) on a 2-vCPU Intel Xeon at the very commit that recorded them (e3aa770), with
NUMBA_CPU_NAME=generic too: a difference of machines, not of code. Every other case recorded on
the AMD machine agrees on the Intel one; shared-nodes/least_node_load, which differed the same
way, was re-recorded on the Intel machine with the rotating strategies' change (e3b2c31).
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from record import summary  # noqa: E402
from simcheck import ORCHESTRATED, STRATEGIES  # noqa: E402

RECORD = json.loads((Path(__file__).parent / "golden" / "summaries.json").read_text())


def _in_suite(case: str) -> bool:
    from lbbench.model.scenario import load_scenario
    preset, strategy = case.split("/", 1)
    if strategy in ORCHESTRATED:
        return True
    sc = load_scenario(preset)
    return strategy in STRATEGIES and not (sc.orchestrated or sc.clients.active or sc.workload.mode == "closed")


CASES = sorted(k for k in RECORD if os.environ.get("LBBENCH_GOLDEN") == "all" or _in_suite(k))


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_the_record_covers_every_preset_and_strategy():
    from lbbench.model.scenario import preset_names
    from lbbench.strategy import names
    assert {k.split("/", 1)[0] for k in RECORD} == set(preset_names())
    assert {k.split("/", 1)[1] for k in RECORD} == set(names())


@pytest.mark.parametrize("case", CASES)
def test_golden_summary(case):
    preset, strategy = case.split("/", 1)
    want, got = RECORD[case], summary(preset, strategy)
    diff = {c: (v, got.get(c)) for c, v in want.items() if not _same(v, got.get(c))}
    assert not diff, f"{case}: recorded vs now {diff}"

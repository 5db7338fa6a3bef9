"""Same seed, same results: every built-in preset x strategy gives the recorded summary.

The record (tests/golden/summaries.json, written by tests/golden/record.py) is the engine's
output before a change; a change that alters any recorded column for an unchanged scenario
fails here and has to be named where it is made, with the record re-written.

Each case compiles its strategy's kernel (with faults for `failover`), which the rest of the
suite does for round_robin, least_load and random only; compiling the others' would add
about 10 s each to a run on an empty cache. So the suite checks those three on every preset,
and LBBENCH_GOLDEN=all checks every recorded case (every preset x strategy).
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
from simcheck import STRATEGIES as WITH_FAULTS  # noqa: E402

RECORD = json.loads((Path(__file__).parent / "golden" / "summaries.json").read_text())
CASES = sorted(k for k in RECORD if os.environ.get("LBBENCH_GOLDEN") == "all" or k.split("/", 1)[1] in WITH_FAULTS)


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

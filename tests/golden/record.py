"""Record the golden summaries: every built-in preset x every built-in strategy, seed 1.

    python tests/golden/record.py          # writes tests/golden/summaries.json

The test (tests/test_golden.py) runs the same list and requires every recorded column to be
bit-identical: a change that alters the results of an unchanged scenario shows up there and
must be named where it is made (and this file re-recorded with the reason).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
# shorter runs than the presets' own, so the whole set takes seconds once compiled
CASES = {"seed-mesh": {"run.requests": 20_000}, "reference": {"run.requests": 40_000},
         "failover": {"run.duration": 120.0, "faults.events": [{"at": 40.0, "kind": "node_down", "node": 2},
                                                               {"at": 90.0, "kind": "node_up", "node": 2}]},
         "flash-crowd": {"run.duration": 150.0, "workload.profile": [{"at": 0.0, "scale": 1.0}, {"at": 60.0, "scale": 3.0},
                                                                     {"at": 90.0, "scale": 1.0}]},
         "closed-loop": {"run.requests": 20_000},
         "shared-nodes": {"run.duration": 120.0, "cluster.background": [{"node": 3, "at": 40.0, "load": 2.0}]},
         "rolling-update": {"run.duration": 120.0}, "autoscale": {"run.duration": 240.0}}
# columns that describe the run's identity or its wall time, not its result
VOLATILE = {"run_id", "wall_s", "req_per_s", "strategy_hash", "lbbench_version", "schema_version"}


def summary(preset: str, strategy: str) -> dict:
    """The recorded columns of one case's summary."""
    from lbbench.engine.run import simulate
    row = simulate(preset, strategy, seed=1, overrides=CASES[preset], progress=False, prefetch=False).row()
    return {k: v for k, v in row.items() if k not in VOLATILE}


def summaries(strategies: list[str] | None = None) -> dict[str, dict]:
    from lbbench.strategy import registry
    return {f"{preset}/{s}": summary(preset, s) for preset in CASES for s in strategies or sorted(registry())}


if __name__ == "__main__":
    res = summaries(sys.argv[1:] or None)
    (HERE / "summaries.json").write_text(json.dumps(res, indent=1, sort_keys=True, allow_nan=True) + "\n")
    print(f"recorded {len(res)} summaries")

"""Shared fixtures, and the compile warm-up of a whole-suite run on several xdist workers."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture
def cli(tmp_path):
    """Run `python -m lbbench ARGS...` in a scratch folder; returns the CompletedProcess."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lbbench", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=600)
    return run


# --------------------------------------------------------------------------------------------
# The suite's time is mostly numba compiling kernels (README, "Tests"). On an empty compile
# cache both xdist workers start with tests that need the same few kernels and compile each of
# them at once, both of them. When the whole suite runs (WARM_FILES test files or more), each
# worker first compiles its own share of those kernels, the two shares at the same time; a
# test then loads from numba's disk cache what the other worker compiled. The shares are of
# about equal cost (CPU seconds on an empty cache, 2-core machine): the failure-capable engine
# and its control code (about 80 s), and the heap and direct paths' engines (about 70 s).

WARM_FILES = 20


def _small(**over):
    from lbbench.model.scenario import PRESETS
    import copy
    d = copy.deepcopy(PRESETS["seed-mesh"])
    d["run"]["requests"] = 300
    d.update(over)
    return d


_FAULTS = dict(faults={"events": [{"at": 1.0, "kind": "task_crash", "service": "web", "count": 1}], "random": []},
               clients={"retries": 1})

# a task's crash alone: round_robin's direct path with crashes (FULL and DIRECT), which the
# fault tests' round_robin runs take
_CRASH = dict(faults={"events": [{"at": 1.0, "kind": "task_crash", "task": 0}], "random": []})

# worker index -> (strategy, scenario overrides, force_heap) of the kernels it compiles first
WARM_SHARES = (
    (("round_robin", _FAULTS, True), ("least_load", _FAULTS, True), ("random", _FAULTS, True),
     ("round_robin", _CRASH, False)),
    (("round_robin", {}, True), ("least_load", {}, False), ("round_robin", {}, False), ("random", {}, False),
     ("random", {}, True), ("power_of_d", {}, True)),
)


def pytest_collection_finish(session):
    worker = getattr(session.config, "workerinput", None)
    if worker is None or worker.get("workercount", 1) < 2:
        return
    if len({item.path for item in session.items}) < WARM_FILES:
        return
    index = int(worker["workerid"].removeprefix("gw"))
    if index >= len(WARM_SHARES):
        return
    from lbbench.engine.run import simulate
    for strategy, over, heap in WARM_SHARES[index]:
        # a failure here is the tests' to report, with their own names
        try:
            simulate(_small(**over), strategy, progress=False, force_heap=heap)
        except Exception:       # noqa: BLE001
            pass

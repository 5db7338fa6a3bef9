"""A run's identity: one hash of everything that changes its result.

`run_identity` is the one place it is computed; `lbbench run`, a sweep's grid and every result
row use it. It covers
- the scenario as validated (after overrides), with `run.seed` the seed actually used, without
  `run.chunk` (results do not depend on it; `simulate(chunk=...)` sets it) and
  `workload.trace` replaced by the sha1 of the trace file's content (a moved trace is the same
  run, an edited one another);
- the strategy: name, version and the hash of its source (`Strategy.source_hash`), and the
  resolved parameters;
- the seed;
- the engine: lbbench's version, the results schema, the versions of numpy and numba, and the
  sha1 of the source of the modules that determine a result (`ENGINE_MODULES`).

The engine part is a hash of source rather than a constant bumped by hand: a forgotten bump
would file the results of changed code under the old runs' names, and `--resume` would mix
them; a source hash errs the safe way (any edit of those modules, a comment too, makes
`--resume` run the grid again, which costs time but mixes nothing). It is computed once per
process.

The run's part files are named by its hash (`run_hash`, 16 hex digits); its `run_id` is the
readable `<scenario>-<strategy>-<seed>-<first 8 of the hash>`, data only.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import SCHEMA_VERSION, __version__

if TYPE_CHECKING:
    from ..model.scenario import Scenario
    from ..plugins.strategy import Strategy

# The modules whose code decides a run's numbers (the scenario's values are hashed as data).
# Every module of the engine and the model (a new one is included without a list to keep).
ENGINE_MODULES = ("engine/*.py", "model/*.py", "plugins/*.py", "rng.py")


@functools.cache
def engine_version() -> str:
    """Hash of lbbench's version, the schema, numpy's and numba's versions and the source of
    `ENGINE_MODULES`; once per process."""
    h = hashlib.sha1(f"{__version__}|{SCHEMA_VERSION}".encode())
    for dist in ("numpy", "numba"):
        try:
            h.update(f"|{dist}={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"|{dist}=?".encode())
    here = Path(__file__).parent.parent
    for pattern in ENGINE_MODULES:
        for path in sorted(here.glob(pattern)):
            h.update(path.relative_to(here).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def trace_digest(path: str) -> str:
    """sha1 of a trace file's content (cached per file, size and modification time); a file
    that cannot be read is named by its path (the run then fails saying why)."""
    try:
        p = os.path.realpath(path)
        st = os.stat(p)
        return "sha1:" + _file_digest(p, st.st_size, st.st_mtime_ns)
    except OSError:
        return "unreadable:" + str(path)


def scenario_identity(scenario: Scenario | dict, seed: int) -> dict:
    """The validated scenario as JSON data, `run.seed` = `seed`, no `run.chunk`, the trace by
    its content."""
    data = scenario if isinstance(scenario, dict) else scenario.model_dump(mode="json")
    data = json.loads(json.dumps(data))
    data.setdefault("run", {})["seed"] = int(seed)
    data["run"].pop("chunk", None)
    for key in ("trace", "profile_csv"):        # files by their content
        path = (data.get("workload") or {}).get(key)
        if isinstance(path, str):
            data["workload"][key] = trace_digest(path)
    return data


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _strategy_identity(spec: Strategy) -> tuple[str, str, str]:
    return spec.name, spec.version, spec.source_hash      # the source is read once per spec


def run_identity(scenario: Scenario | dict, spec: Strategy, params: dict, seed: int) -> tuple[str, str]:
    """(run_hash, run_id) of a run: see the module's docstring."""
    sc = scenario_identity(scenario, seed)
    name, version, source = _strategy_identity(spec)
    run_hash = _hash({
        "scenario": sc,
        "strategy": {"name": name, "version": version, "source": source},
        "params": {k: float(v) for k, v in params.items()},
        "seed": int(seed),
        "engine": engine_version(),
    })
    return run_hash, run_id(sc.get("name"), name, seed, run_hash)


def run_id(scenario_name, strategy_name, seed, run_hash: str) -> str:
    """The readable, unique id of a run: `<scenario>-<strategy>-<seed>-<first 8 of the hash>`."""
    return f"{scenario_name}-{strategy_name}-{seed}-{run_hash[:8]}"

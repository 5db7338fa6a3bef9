"""Sweeps: a grid of runs from a TOML file, run in parallel, written run by run
(docs/architecture.md, "Data flow").

Sweep file:

    name = "seed_mesh"                 # output folder results/<name>/ (default: file stem;
                                       # store.safe_name makes it a file name)
    scenario = "seed-mesh"             # a preset, a TOML path (relative to this file),
                                       # or an inline [scenario] table
    seeds = [1, 2, 3]                  # or: replications = 5  (seeds 0..4)
    [set]                              # fixed overrides of the base scenario
    "run.requests" = 100000
    [axes]                             # cartesian product of every axis
    strategy = ["round_robin", "least_load", { name = "power_of_d", params = { d = 2 } }]
    "workload.rho" = [0.5, 0.7, 0.9]
    [zip]                              # these axes advance together (equal lengths)
    "cluster.nodes" = [3, 10]
    "services.0.replicas" = [3, 10]
    [[variants]]                       # named override sets, one more axis ("variant" column)
    name = "equal"
    set = {}
    [[variants]]
    name = "node2-half-speed"
    set = { "cluster.speeds" = [1.0, 1.0, 0.5] }

Seeds come only from `seeds` or `replications` (`run.seed` elsewhere is refused); each group of
overrides ([set], a variant's set, a grid point) clears alternative keys as `--set` does, and a
relative `workload.trace` is relative to this file. A grid above `MAX_RUNS` is refused before
it is expanded unless asked for.

Each run is identified by its `run_hash` (lbbench.engine.identity: the resolved scenario with its seed,
the strategy's name, version and source, parameters, the engine, a trace's content); its part
files are named by that hash (short runs that a worker ran together: by their batch,
`execute_batch`), written to a temporary name and renamed, the `runs/` part last, so a run
exists exactly when its `runs/` part does. A sweep holds its folder's lock while it
writes; `--resume` runs the grid points whose part is missing, failed or unreadable, and sets
aside the parts of runs that are no point of the grid (see `_sort_out`).

Executors: local worker processes (`pool.py`: forked from a process that has numba loaded;
`RunQueue` hands them the runs, short ones in batches; a worker that dies or runs past
`--timeout` costs its run only, recorded as failed); Dask (a local cluster or a scheduler).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import SCHEMA_VERSION, __version__
from ..errors import UserError
from ..model.scenario import apply_overrides, raw_scenario, read_text, read_toml, validate
from ..results.store import BATCH_PREFIX, write_run

if TYPE_CHECKING:
    import polars as pl
# polars is imported where it is used: it starts threads, and `lbbench sweep` forks its workers
# before it has any (pool.py)

_TOP_KEYS = {"name", "scenario", "seeds", "replications", "set", "axes", "zip", "variants", "description"}


@dataclass
class RunSpec:
    """One run of a sweep: everything a worker needs, picklable, no live objects."""

    sweep: str
    scenario: dict           # resolved scenario dict (validated)
    strategy: str            # registered name or absolute FILE.py:NAME
    params: dict
    seed: int
    axes: dict               # swept key -> value (for the result columns)
    run_hash: str


@dataclass
class Sweep:
    name: str
    path: Path | None
    text: str
    runs: list[RunSpec]


MAX_RUNS = 10_000      # a larger grid needs load_sweep(..., max_runs=None) (`lbbench sweep --yes`)


def _strategy_entries(values, where: str) -> list[tuple[str, dict]]:
    out = []
    if not isinstance(values, list) or not values:
        raise UserError(f"{where}: give a non-empty list of strategy names or {{name = ..., params = {{...}}}} tables")
    for v in values:
        if isinstance(v, str):
            out.append((v, {}))
        elif isinstance(v, dict) and isinstance(v.get("name"), str) and set(v) <= {"name", "params"}:
            params = v.get("params", {})
            if not isinstance(params, dict):
                raise UserError(f"{where}: params of {v['name']} must be a table")
            out.append((v["name"], dict(params)))
        else:
            raise UserError(f"{where}: entry {v!r} is not a strategy name or {{name = ..., params = {{...}}}}")
    return out


def _column_value(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _table(data: dict, key: str, what: str) -> dict:
    """A table of dotted keys from the sweep file, with `run.seed` refused (seeds are `seeds =`)."""
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise UserError(f"sweep: {what} must be a table of dotted keys, got {table!r}")
    for k, v in table.items():
        if k == "run.seed" or (k == "run" and isinstance(v, dict) and "seed" in v):
            raise UserError(f"sweep {what}: run.seed cannot be set here; give the seeds with seeds = [...] "
                            "(or replications = N)")
    return table


def _seeds(data: dict) -> range | list[int]:
    if "seeds" in data and "replications" in data:
        raise UserError("sweep: give seeds or replications, not both")
    if "seeds" in data:
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds):
            raise UserError("sweep: seeds must be a non-empty list of non-negative integers (below 2**63)")
        return seeds
    reps = data.get("replications", 1)
    if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
        raise UserError(f"sweep: replications must be a positive integer, got {reps!r}")
    return range(reps)          # not expanded before the grid's size is checked


def _variants(data: dict) -> list[dict]:
    variants = data.get("variants", [])
    form = "each needs name = \"...\" and an optional set = { key = value }"
    if not isinstance(variants, list):
        raise UserError(f"sweep [[variants]]: {form}")
    seen = set()
    for i, v in enumerate(variants):
        if not isinstance(v, dict) or set(v) - {"name", "set"} or not isinstance(v.get("name"), str) or not v["name"]:
            raise UserError(f"sweep [[variants]] {i + 1}: {form}")
        if v["name"] in seen:
            raise UserError(f"sweep [[variants]]: two variants are named {v['name']!r}; give each its own name")
        seen.add(v["name"])
        _table(v, "set", f"variant {v['name']!r} set")
    return variants


def _strategy_specs(strategies: list[tuple[str, dict]], base_dir: Path) -> dict:
    """Each strategy entry's spec; a name that two sources give (a file plugin named like a
    registered strategy, two files with one name) is refused: their rows would merge."""
    from ..plugins.strategy import name_clash, resolve
    specs, by_name = {}, {}
    for sname, _ in strategies:
        if sname in specs:
            continue
        target = sname
        if ".py:" in sname and not Path(sname.rsplit(":", 1)[0]).is_absolute():
            target = str(base_dir / sname)     # plugin paths are relative to the sweep file
        spec = specs[sname] = resolve(target)
        ref = spec.ref or spec.name
        clash = name_clash(spec)
        if clash:
            raise UserError(f"sweep axes.strategy: {clash}")
        if by_name.setdefault(spec.name, ref) != ref:
            raise UserError(f"sweep axes.strategy: two plugins are named {spec.name!r} ({by_name[spec.name]} and {ref}); "
                            "rename one (Strategy(name=...))")
    return specs


def load_sweep(source: str | Path | dict, *, name: str | None = None, max_runs: int | None = MAX_RUNS) -> Sweep:
    """Read and expand a sweep; every run's scenario and strategy is validated here. A grid of
    more than `max_runs` runs is refused before it is expanded (None: no limit)."""
    from ..engine.identity import run_identity

    if isinstance(source, dict):
        data, path, text = source, None, json.dumps(source)
        base_dir = Path.cwd()
    else:
        path = Path(source)
        data = read_toml(path, "sweep")
        text = read_text(path, "sweep")
        base_dir = path.parent
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise UserError(f"sweep: unknown key {sorted(unknown)[0]!r}; keys are {', '.join(sorted(_TOP_KEYS))}")
    sweep_name = name or data.get("name") or (path.stem if path else "sweep")
    if not isinstance(sweep_name, str) or not sweep_name.strip():
        raise UserError("sweep: name must be a non-empty string")
    base = data.get("scenario", "reference")
    if isinstance(base, str) and base.endswith(".toml") and not Path(base).is_absolute():
        base = str(base_dir / base)
    if not isinstance(base, (str, dict)):
        raise UserError("sweep: scenario must be a preset name, a TOML path or an inline table")
    base_data, label = raw_scenario(base, base_dir)
    apply_overrides(base_data, _table(data, "set", "[set]").items(), what="sweep set", base_dir=base_dir)
    seeds = _seeds(data)

    axes = dict(_table(data, "axes", "[axes]"))
    strategies = _strategy_entries(axes.pop("strategy", ["round_robin"]), "sweep axes.strategy")
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise UserError(f"sweep axes.{k}: give a non-empty list of values")
    zipped = _table(data, "zip", "[zip]")
    lengths = {len(v) if isinstance(v, list) else -1 for v in zipped.values()}
    if zipped and (len(lengths) != 1 or -1 in lengths or 0 in lengths):
        raise UserError("sweep [zip]: every zipped key needs a non-empty list, all of the same length")
    variants = _variants(data)

    size = len(strategies) * math.prod(len(v) for v in axes.values()) * max(lengths if zipped else {1}) \
        * max(len(variants), 1) * len(seeds)
    if max_runs is not None and size > max_runs:
        raise UserError(f"sweep {sweep_name}: the grid has {size:,} runs, more than {max_runs:,}; "
                        "add --yes to run it, or make it smaller")

    specs = _strategy_specs(strategies, base_dir)
    axis_keys = list(axes)
    axis_values = [axes[k] for k in axis_keys]
    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    variant_rows = variants or [None]
    runs: list[RunSpec] = []
    for (sname, params), combo, zrow, variant, seed in itertools.product(
            strategies, itertools.product(*axis_values), zip_rows, variant_rows, seeds):
        sc = json.loads(json.dumps(base_data))
        point = dict(zip(axis_keys, combo))
        point.update(zrow)
        if variant is not None:
            apply_overrides(sc, variant.get("set", {}).items(), what=f"sweep variant {variant['name']}", base_dir=base_dir)
        apply_overrides(sc, point.items(), what="sweep axis", base_dir=base_dir)
        sc.setdefault("run", {})
        if isinstance(sc["run"], dict):
            sc["run"]["seed"] = seed            # the scenario records the seed the run uses
        where = f"sweep {sweep_name} ({', '.join(f'{k}={v}' for k, v in point.items()) or 'base'})"
        scenario = validate(sc, where).model_dump(mode="json")
        spec = specs[sname]
        pvals = spec.resolve_params(params)
        cols = {k: _column_value(v) for k, v in point.items()}
        if variant is not None:
            cols["variant"] = variant["name"]
        run_hash, _ = run_identity(scenario, spec, pvals, seed)
        runs.append(RunSpec(sweep_name, scenario, spec.ref or spec.name, pvals, seed, cols, run_hash))
    hashes = [r.run_hash for r in runs]
    if len(set(hashes)) != len(hashes):
        raise UserError(f"sweep {sweep_name}: two grid points give the same run (a repeated axis value?); remove the duplicate")
    return Sweep(sweep_name, path, text, runs)


# --------------------------------------------------------------------------------------------
# Executing one run (in a worker process)

_SCENARIOS: dict = {}      # a run's scenario without its seed (canonical JSON) -> the validated Scenario
_SCENARIOS_MAX = 64


def _scenario(run: RunSpec):
    """The run's validated scenario. Runs that differ only by their seed share one validation:
    the first one's `Scenario`, copied with the run's seed (frozen models: the copy shares every
    other part, and so the cluster built from them, lbbench.engine.run). The run's hash, checked
    after the run, covers the scenario it ran."""
    from ..model.scenario import load_scenario
    data = run.scenario
    rest = {k: v for k, v in data.get("run", {}).items() if k != "seed"}
    key = json.dumps({**data, "run": rest}, sort_keys=True)
    base = _SCENARIOS.get(key)
    if base is None:
        if len(_SCENARIOS) >= _SCENARIOS_MAX:
            _SCENARIOS.clear()
        _SCENARIOS[key] = load_scenario(data)
        return _SCENARIOS[key]
    return base.model_copy(update={"run": base.run.model_copy(update={"seed": run.seed})})


def _simulate(run: RunSpec) -> tuple[dict | None, dict]:
    """One run: (its tables' pieces (lbbench.experiments.batch), its result), or (None, the
    failure) if it raised."""
    import polars as pl

    from ..engine.run import run_parts
    from .batch import lit_dtype, run_pieces
    try:
        parts = run_parts(_scenario(run), run.strategy, run.params, progress=False, prefetch=False)
        if parts.extra["run_hash"] != run.run_hash:
            raise UserError("the strategy's source or lbbench changed after the sweep was read; run it again with --resume")
    except Exception as exc:  # a failing run is recorded, never stops the sweep
        msg = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
        return None, {"run_hash": run.run_hash, "ok": False, "error": msg, "detail": traceback.format_exc(limit=3)}
    # `error` is typed String even when null: parts must agree on the schema for polars to scan them
    added = {k: (v, pl.String) for k, v in
             {"sweep": run.sweep, "run_hash": run.run_hash, "status": "ok", "error": None}.items()}
    added.update({k: (v, lit_dtype(v)) for k, v in run.axes.items()})
    return run_pieces(parts, run.run_hash, added), {"run_hash": run.run_hash, "ok": True}


def execute(run: RunSpec, out: str | None = None) -> dict:
    """Simulate one run. With `out` (a local worker, same filesystem) the run's parts are
    written here and the result is small; otherwise it carries the tables, for the caller to
    write (a Dask worker may be on another machine). A failure returns the error."""
    from .batch import tables
    pieces, result = _simulate(run)
    if pieces is None:
        return result
    if out is not None:
        write_run(Path(out), run.run_hash, tables([pieces]))
        return result
    return {**result, "tables": tables([pieces])}


def execute_batch(runs: list[RunSpec], out: str) -> list[dict]:
    """Simulate short runs one after the other in this worker and write their parts together,
    one part per table named by `batch_part` (the runs/ part last; a failed run's row
    included): a sweep of many short runs is otherwise bound by writing four files per run,
    and by making frames run by run (lbbench.experiments.batch). Returns each run's result,
    marked `written`."""
    from ..results.store import batch_part
    from .batch import tables
    pieces = []
    results = []
    for run in runs:
        p, result = _simulate(run)
        pieces.append(p if p is not None else {"runs": failed_row(run, result["error"])})
        results.append({**result, "written": True})
    write_run(Path(out), batch_part([r.run_hash for r in runs]), tables(pieces))
    return results


def failed_row(run: RunSpec, error: str) -> pl.DataFrame:
    import polars as pl

    from ..engine.identity import run_id
    from ..engine.run import SUMMARY_SCHEMA
    from ..plugins.strategy import resolve
    row = {k: None for k in SUMMARY_SCHEMA}
    try:
        spec = resolve(run.strategy)
        row.update(strategy=spec.name, strategy_version=spec.version, strategy_hash=spec.source_hash)
    except Exception:
        row.update(strategy=run.strategy)
    row.update(run_id=run_id(run.scenario.get("name"), row["strategy"], run.seed, run.run_hash), scenario=run.scenario.get("name"),
               params=json.dumps(run.params, sort_keys=True), seed=run.seed,
               lbbench_version=__version__, schema_version=SCHEMA_VERSION)
    df = pl.DataFrame([row], schema=SUMMARY_SCHEMA)
    extra = {"sweep": run.sweep, "run_hash": run.run_hash, "status": "failed", "error": error}
    return df.with_columns(**{k: pl.lit(v) for k, v in extra.items()}, **{k: pl.lit(v) for k, v in run.axes.items()})


# --------------------------------------------------------------------------------------------
# The runner

def _read_parts(out: Path, tables: tuple[str, ...] = ("runs",)) -> tuple[dict[str, list[dict]], set[str]]:
    """The runs/ rows under `out` by part name (one row, or a batch's), and the names of the
    parts with a file (in `tables`) that cannot be read in full. A runs/ part is whole when it
    has one row per run and its name is its runs' (`batch_part`)."""
    from ..results.store import batch_part, part_names
    rows, damaged = {}, set()
    parts = part_names(out)
    if parts:
        import polars as pl
    for stem, files in parts.items():
        for f in files:
            if f.parent.name not in tables:
                continue
            try:
                df = pl.read_parquet(f)
            except Exception:
                df = None
            if df is not None and f.parent.name == "runs":
                hashes = df["run_hash"].to_list() if "run_hash" in df.columns and df.height else []
                whole = (df.height == 1 or (all(isinstance(h, str) for h in hashes) and len(set(hashes)) == df.height
                                            and batch_part(hashes) == stem))
                if whole:
                    rows[stem] = df.rows(named=True)
                    continue
                df = None
            if df is None:
                damaged.add(stem)
    return rows, damaged


def run_status(out: Path) -> dict[str, str]:
    """run_hash -> status ("ok" or "failed") of every run recorded under `out` (parts that
    cannot be read are left out)."""
    return {row.get("run_hash"): row.get("status") for part in _read_parts(out)[0].values() for row in part}


def _belongs(row: dict, run: RunSpec, columns: set[str]) -> bool:
    """Whether a runs/ row is this grid point's: its hash, sweep, columns and swept values."""
    return (row.get("run_hash") == run.run_hash and row.get("sweep") == run.sweep and row.get("status") in ("ok", "failed")
            and set(row) == columns | set(run.axes) and all(row[k] == v for k, v in run.axes.items()))


def _sort_out(out: Path, sweep: Sweep) -> dict[str, str]:
    """Before a resumed sweep: the status of each grid point recorded under `out`. The parts of
    runs that belong to no point of the grid (an edited sweep file, another plugin or lbbench,
    a part copied from elsewhere) and of runs with a part that cannot be read in full are moved
    to DIR/superseded/ (never deleted), so that the sweep, its manifest, its report and a plain
    scan of DIR/runs/*.parquet see this sweep's runs only; the damaged ones run again. A batch's
    part (`execute_batch`) is kept or set aside whole: with a row that is no point of the grid,
    its other runs run again; a run recorded in two parts has both set aside; a batch with a
    failed run is set aside and runs again whole (a failed run runs again, and its new row must
    not join the old one in a scan). (Every part is read: about 1 ms each.)"""
    from ..engine.run import SUMMARY_SCHEMA
    from ..results.store import TABLES, part_names, set_aside
    rows, damaged = _read_parts(out, TABLES)
    grid = {r.run_hash: r for r in sweep.runs}
    columns = set(SUMMARY_SCHEMA) | {"sweep", "run_hash", "status", "error"}
    parts = part_names(out)
    foreign, unfinished, retried = set(), set(), set()
    owners: dict[str, int] = {}
    for part in rows.values():
        for row in part:
            owners[row.get("run_hash")] = owners.get(row.get("run_hash"), 0) + 1
    for stem in sorted(parts):
        part = rows.get(stem)
        if part is None:
            # files without a runs/ part: a writer stopped midway (they would not be written
            # over: the run may go in a batch next time, or a batch be made up otherwise), or
            # the parts of no run of the grid
            if stem not in damaged:
                (unfinished if stem in grid or stem.startswith(BATCH_PREFIX) else foreign).add(stem)
            continue
        if len(part) == 1:
            ok = stem in grid and _belongs(part[0], grid[stem], columns)
        else:
            ok = all(row.get("run_hash") in grid and _belongs(row, grid[row["run_hash"]], columns) for row in part)
        if not ok or any(owners[row.get("run_hash")] > 1 for row in part):   # a run in two parts: neither is kept
            foreign.add(stem)
        elif len(part) > 1 and any(row.get("status") == "failed" for row in part):
            # a failed run runs again and writes a part of its own (or joins another batch), so
            # its batch's part would hold a second row for it: the batch runs again whole
            retried.add(stem)
    damaged -= foreign
    retried -= foreign | damaged
    status = {row["run_hash"]: row["status"] for stem, part in rows.items() if stem not in foreign | damaged | retried
              for row in part}
    files = [f for stem in sorted(foreign | damaged | unfinished | retried) for f in parts[stem]]
    if files:
        where = set_aside(out, files)
        n_foreign = sum(len(rows.get(stem) or [None]) for stem in foreign)
        said = [f"{n_foreign} belong to no point of this sweep"] if foreign else []
        said += [f"{len(damaged)} have a part that cannot be read and run again"] if damaged else []
        said += [f"{len(unfinished)} runs or batches of runs were stopped while their parts were written"] if unfinished else []
        n_retried = sum(len(rows[stem]) for stem in retried)
        said += [f"{n_retried} were written in one part with a failed run and run again"] if retried else []
        print(f"lbbench: of the runs under {out}, {' and '.join(said)}; their {len(files)} part files are set aside "
              f"in {where}/", file=sys.stderr)
    return status


def _read_manifest(out: Path) -> dict:
    """The manifest under `out`, or {} (none, or damaged: it is written again)."""
    try:
        m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


def _check_out(out: Path, sweep: Sweep, resume: bool) -> None:
    """Refuse a folder that holds another sweep, or results without --resume."""
    other = _read_manifest(out).get("sweep")
    if other is not None and other != sweep.name:
        raise UserError(f"{out} holds the results of sweep {other!r}, not {sweep.name!r}; choose another --out")
    runs = out / "runs"
    if not resume and runs.is_dir() and any(not p.name.startswith(".") for p in runs.glob("*.parquet")):
        raise UserError(f"{out} already holds results; add --resume to complete them, or choose another --out")


def write_manifest(out: Path, sweep: Sweep, created: str, status: dict[str, str] | None = None) -> dict:
    """The sweep's manifest.json; `status` (run_hash -> status) as the runner kept it, else read
    from the runs/ parts."""
    from ..results.store import write_text_atomic
    if status is None:
        status = run_status(out)
    wanted = {r.run_hash for r in sweep.runs}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "lbbench_version": __version__,
        "sweep": sweep.name,
        "grid_size": len(sweep.runs),
        "completed": sum(1 for h in wanted if status.get(h) == "ok"),
        "failed": sum(1 for h in wanted if status.get(h) == "failed"),
        "created": created,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


class RunQueue:
    """Hands a sweep's runs to a pool's workers one at a time, in order (grouped by strategy),
    except that
    - the other runs of a strategy wait while its first run is in flight: that first run
      compiles the strategy's kernel (seconds, on an empty cache), and another worker asking
      for the same kernel meanwhile would compile it again instead of loading it from numba's
      disk cache once written;
    - each strategy's first run goes out as soon as a worker is free: the kernels compile side
      by side, and no worker is left idle at the end waiting on the last strategy's first run.
    The order never changes a run's results."""

    def __init__(self, runs: list[RunSpec]):
        self.pending = list(runs)
        self.started: set[str] = set()     # strategies with a run handed out
        self.ready: set[str] = set()       # strategies with a run finished (kernel compiled)
        self.single: set[str] = set()      # runs not to batch

    def next(self) -> RunSpec | None:
        """The next run to start, or None while only held-back runs are left."""
        for i, r in enumerate(self.pending):
            if r.strategy not in self.started:
                self.started.add(r.strategy)
                return self.pending.pop(i)
        for i, r in enumerate(self.pending):
            if r.strategy in self.ready:
                return self.pending.pop(i)
        return None

    def finished(self, run: RunSpec) -> None:
        self.ready.add(run.strategy)

    def next_batch(self, limit) -> list[RunSpec]:
        """The next runs to start in one worker, one after the other: `next()`, and with it up
        to `limit(run)` - 1 more runs of its strategy once that strategy's kernel is ready
        (a strategy's first run goes alone, and so does a run sent back by `alone`). Empty
        while only held-back runs are left."""
        first = self.next()
        if first is None:
            return []
        batch, n = [first], limit(first)
        if first.strategy in self.ready and first.run_hash not in self.single:
            i = 0
            while len(batch) < n and i < len(self.pending):
                r = self.pending[i]
                if r.strategy == first.strategy and r.run_hash not in self.single:
                    batch.append(self.pending.pop(i))
                else:
                    i += 1
        return batch

    def alone(self, runs: list[RunSpec]) -> None:
        """Runs of a batch whose worker died: each runs again by itself, first, so that only
        the run that killed it is lost."""
        self.pending[:0] = runs
        self.single |= {r.run_hash for r in runs}


# local workers beyond the CPUs only wait for them; far beyond, they exhaust memory
MAX_WORKERS = 4 * (os.cpu_count() or 1)


def run_sweep(sweep: Sweep, out: str | Path, *, workers: int | None = None, resume: bool = False,
              executor: str = "local", scheduler: str | None = None, progress: bool = True,
              timeout: float | None = None) -> dict:
    """Run every missing run of `sweep` into `out`; returns the manifest. `timeout`: seconds a
    run may take (local executor), after which it is stopped and recorded as failed."""
    from ..results.store import FolderLock, prepare_out

    out = Path(out)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be a whole number from 1 to {MAX_WORKERS} (4 per CPU), got {workers!r}")
    if executor not in ("local", "dask"):
        raise UserError(f"--executor must be local or dask, not {executor!r}")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout < math.inf):
            raise UserError(f"--timeout must be a finite number of seconds > 0, got {timeout!r}")
        if executor != "local":
            raise UserError("--timeout needs --executor local (a Dask run cannot be stopped on its worker)")
    if executor == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UserError("--executor dask needs Dask: pip install -e \".[dask]\" (or pip install 'dask[distributed]')") from None
    prepare_out(out)
    lock = FolderLock(out)          # held until the sweep ends: a second writer is refused
    pool = None
    try:
        _check_out(out, sweep, resume)
        if executor == "local":
            # before polars or the progress bar start threads here: the workers may be forked from
            # this process (pool.py)
            from .pool import Workers
            pool = Workers(min(workers, len(sweep.runs)), timeout=timeout)
        return _run(sweep, out, workers, resume, executor, scheduler, progress, pool)
    finally:
        if pool is not None:
            pool.close()
            # a worker stopped mid-write (interrupt, timeout) leaves a temporary: remove it while
            # the folder is still ours and no worker is left
            from ..results.store import clean_temporaries
            clean_temporaries(out)
        lock.release()


def _run(sweep, out, workers, resume, executor, scheduler, progress, pool) -> dict:
    from ..results.store import clean_temporaries, write_tables, write_text_atomic

    clean_temporaries(out)      # under the folder's lock: no other writer's temporaries
    # The runs' status, kept here as they are recorded: the manifest at the end needs no read of
    # the parts (nor polars, in a process whose workers wrote them)
    status = _sort_out(out, sweep) if resume else {}
    todo = [r for r in sweep.runs if status.get(r.run_hash) != "ok"]
    # grouped by strategy: a worker compiles or loads each strategy's kernel once
    todo.sort(key=lambda r: (r.strategy, r.seed))
    write_text_atomic(out / ("sweep.toml" if sweep.path is None or sweep.path.suffix == ".toml" else sweep.path.name), sweep.text)
    created = _read_manifest(out).get("created")
    if not isinstance(created, str):
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_manifest(out, sweep, created, status)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(sweep.runs), initial=len(sweep.runs) - len(todo), unit="run", desc=f"sweep {sweep.name}",
                   dynamic_ncols=True, disable=None)
    failures = 0

    def record(run: RunSpec, result: dict):
        nonlocal failures
        if result["ok"]:
            if "tables" in result:
                write_run(out, run.run_hash, result["tables"])
            status[run.run_hash] = "ok"
        else:
            failures += 1
            if not result.get("written"):
                write_tables(out, run.run_hash, {"runs": failed_row(run, result["error"])})
            status[run.run_hash] = "failed"
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=failures)

    complete = False
    try:
        if not todo:
            pass
        elif executor == "dask":
            _run_dask(todo, record, workers, scheduler)
        else:
            _run_pool(pool, todo, record, out)
        complete = True
    finally:
        if bar is not None:
            bar.close()
        # interrupted: runs in flight may have been written without being recorded here
        manifest = write_manifest(out, sweep, created, status if complete else None)
    return manifest


# Short runs go to a worker in batches (`execute_batch`): up to BATCH_MAX runs of one strategy
# with at most BATCH_REQUESTS requests in all, and no more than a quarter of what is left per
# worker, so that the workers end together. Runs bounded by duration, and any run under a
# --timeout (a per-run limit), go one by one.
BATCH_REQUESTS = 50_000
BATCH_MAX = 64


def _batch_limit(run: RunSpec, left: int, workers: int, timeout: float | None) -> int:
    requests = run.scenario.get("run", {}).get("requests")
    if timeout is not None or not isinstance(requests, int) or requests <= 0:
        return 1
    return max(1, min(BATCH_MAX, BATCH_REQUESTS // requests, math.ceil(left / (4 * workers))))


def _run_pool(pool, todo, record, out):
    """The runs on the local workers, in `RunQueue` order, short ones in batches. A run whose
    worker died or ran past the time limit is recorded as failed, without the parts it may have
    begun to write; the other runs of a batch whose worker died run again one by one.
    Interrupted, the workers are killed before the caller writes the manifest."""
    from ..results.store import batch_part, remove_parts

    queue = RunQueue(todo)
    running = {}            # part name -> its runs
    n_workers = pool.size

    def fill():
        while pool.idle:
            batch = queue.next_batch(lambda r: _batch_limit(r, len(queue.pending) + 1, n_workers, pool.timeout))
            if not batch:
                return
            key = batch_part([r.run_hash for r in batch])
            if len(batch) == 1:
                pool.submit(key, execute, batch[0], str(out))       # the worker writes the parts
            else:
                pool.submit(key, execute_batch, batch, str(out))
            running[key] = batch
    try:
        fill()
        while running:
            finished = [(key, running.pop(key), result, error) for key, result, error in pool.results()]
            for key, batch, _result, error in finished:
                for r in batch:
                    queue.finished(r)
                if error is not None and len(batch) > 1:
                    remove_parts(out, key)
                    queue.alone(batch)
            fill()              # the workers go on while this process records the results
            for key, batch, result, error in finished:
                if error is None:
                    for r, res in zip(batch, result if len(batch) > 1 else [result]):
                        record(r, res)
                elif len(batch) == 1:
                    remove_parts(out, key)
                    record(batch[0], {"run_hash": key, "ok": False, "error": error})
    except BaseException:
        pool.close(kill=True)
        raise


def _run_dask(todo, record, workers, scheduler):
    from distributed import Client, LocalCluster, as_completed
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {}
        for r in todo:
            futures[client.submit(execute, r, pure=False, key=f"lbbench-{r.run_hash}")] = r
        for fut in as_completed(list(futures)):
            try:
                result = fut.result()
            except Exception as exc:    # the run's workers died (KilledWorker), or it was lost
                msg = f"worker lost: {exc.__class__.__name__}: {exc}".splitlines()[0]
                result = {"run_hash": futures[fut].run_hash, "ok": False, "error": msg}
            record(futures[fut], result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def grid_table(sweep: Sweep, limit: int = 10) -> pl.DataFrame:
    import polars as pl
    rows = [{"run_hash": r.run_hash, "strategy": r.strategy.rsplit("/", 1)[-1], "params": json.dumps(r.params), **r.axes, "seed": r.seed}
            for r in sweep.runs[:limit]]
    return pl.DataFrame(rows)

"""Sweeps: a grid of runs from a TOML file, run in parallel, written run by run (DESIGN 4).

Sweep file:

    name = "seed_mesh"                 # output folder results/<name>/ (default: file stem)
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

Each run is identified by a stable hash of its full resolved scenario, strategy, parameters
and seed; its part files are named by that hash, written to a temporary name and renamed, the
`runs/` part last, so a run exists exactly when its `runs/` part does and `--resume` runs only
the runs whose part is missing (or recorded as failed).

Executors: local worker processes (`pool.py`: forked from a process that has numba loaded;
`RunQueue` hands them the runs; a worker that dies or runs past `--timeout` costs its run only,
recorded as failed); Dask (a local cluster or a scheduler).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import SCHEMA_VERSION, __version__
from .errors import UserError
from .scenario import raw_scenario, read_toml, set_path, validate

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


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _column_value(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def load_sweep(source: str | Path | dict, *, name: str | None = None) -> Sweep:
    """Read and expand a sweep; every run's scenario and strategy is validated here."""
    from .strategy import resolve

    if isinstance(source, dict):
        data, path, text = source, None, json.dumps(source)
        base_dir = Path.cwd()
    else:
        path = Path(source)
        data = read_toml(path, "sweep")
        text = path.read_text(encoding="utf-8")
        base_dir = path.parent
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise UserError(f"sweep: unknown key {sorted(unknown)[0]!r}; keys are {', '.join(sorted(_TOP_KEYS))}")
    sweep_name = name or data.get("name") or (path.stem if path else "sweep")
    if not isinstance(sweep_name, str) or not sweep_name or "/" in sweep_name:
        raise UserError("sweep: name must be a non-empty string without '/'")
    base = data.get("scenario", "reference")
    if isinstance(base, str) and base.endswith(".toml") and not Path(base).is_absolute():
        base = str(base_dir / base)
    if not isinstance(base, (str, dict)):
        raise UserError("sweep: scenario must be a preset name, a TOML path or an inline table")
    base_data, label = raw_scenario(base)
    fixed = data.get("set", {})
    if not isinstance(fixed, dict):
        raise UserError("sweep: [set] must be a table of dotted keys")
    for k, v in fixed.items():
        set_path(base_data, k, v, what="sweep set")

    if "seeds" in data and "replications" in data:
        raise UserError("sweep: give seeds or replications, not both")
    if "seeds" in data:
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise UserError("sweep: seeds must be a non-empty list of non-negative integers")
    else:
        reps = data.get("replications", 1)
        if not isinstance(reps, int) or reps < 1:
            raise UserError(f"sweep: replications must be a positive integer, got {reps!r}")
        seeds = list(range(reps))

    axes = dict(data.get("axes", {}))
    if not isinstance(axes, dict):
        raise UserError("sweep: [axes] must be a table")
    strategies = _strategy_entries(axes.pop("strategy", ["round_robin"]), "sweep axes.strategy")
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise UserError(f"sweep axes.{k}: give a non-empty list of values")
    zipped = data.get("zip", {})
    if not isinstance(zipped, dict):
        raise UserError("sweep: [zip] must be a table")
    lengths = {len(v) if isinstance(v, list) else -1 for v in zipped.values()}
    if zipped and (len(lengths) != 1 or -1 in lengths or 0 in lengths):
        raise UserError("sweep [zip]: every zipped key needs a non-empty list, all of the same length")
    variants = data.get("variants", [])
    if not isinstance(variants, list) or any(not isinstance(v, dict) or "name" not in v or set(v) - {"name", "set"} for v in variants):
        raise UserError("sweep [[variants]]: each needs name = \"...\" and an optional set = { key = value }")

    axis_keys = list(axes)
    axis_values = [axes[k] for k in axis_keys]
    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    variant_rows = variants or [None]
    runs: list[RunSpec] = []
    resolved_specs = {}
    for (sname, params), combo, zrow, variant, seed in itertools.product(
            strategies, itertools.product(*axis_values), zip_rows, variant_rows, seeds):
        sc = json.loads(json.dumps(base_data))
        point = dict(zip(axis_keys, combo))
        point.update(zrow)
        if variant is not None:
            for k, v in variant.get("set", {}).items():
                set_path(sc, k, v, what=f"sweep variant {variant['name']}")
        for k, v in point.items():
            set_path(sc, k, v, what="sweep axis")
        where = f"sweep {sweep_name} ({', '.join(f'{k}={v}' for k, v in point.items()) or 'base'})"
        scenario = validate(sc, where).model_dump(mode="json")
        if sname not in resolved_specs:
            target = sname
            if ".py:" in sname and not Path(sname.rsplit(":", 1)[0]).is_absolute():
                target = str(base_dir / sname)     # plugin paths are relative to the sweep file
            resolved_specs[sname] = resolve(target)
        spec = resolved_specs[sname]
        pvals = spec.resolve_params(params)
        cols = {k: _column_value(v) for k, v in point.items()}
        if variant is not None:
            cols["variant"] = variant["name"]
        ref = spec.ref or spec.name
        run_hash = _hash({"scenario": scenario, "strategy": ref, "params": pvals, "seed": seed})
        runs.append(RunSpec(sweep_name, scenario, ref, pvals, seed, cols, run_hash))
    hashes = [r.run_hash for r in runs]
    if len(set(hashes)) != len(hashes):
        raise UserError(f"sweep {sweep_name}: two grid points give the same run (a repeated axis value?); remove the duplicate")
    return Sweep(sweep_name, path, text, runs)


# --------------------------------------------------------------------------------------------
# Executing one run (in a worker process)

def write_run(out: Path, run_hash: str, tables: dict) -> None:
    """A run's part files, its runs/ part last: the run exists exactly when that part does."""
    from .store import write_tables
    tables = dict(tables)
    runs_df = tables.pop("runs")
    write_tables(out, run_hash, tables)
    write_tables(out, run_hash, {"runs": runs_df})


def execute(run: RunSpec, out: str | None = None) -> dict:
    """Simulate one run. With `out` (a local worker, same filesystem) the run's parts are
    written here and the result is small; otherwise it carries the tables, for the caller to
    write (a Dask worker may be on another machine). A failure returns the error."""
    import polars as pl

    from .simulation import simulate
    try:
        res = simulate(run.scenario, run.strategy, run.params, seed=run.seed, progress=False, prefetch=False)
    except Exception as exc:  # a failing run is recorded, never stops the sweep
        msg = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
        return {"run_hash": run.run_hash, "ok": False, "error": msg, "detail": traceback.format_exc(limit=3)}
    extra = {"sweep": run.sweep, "run_hash": run.run_hash, "status": "ok", "error": None}
    tables = {
        # `error` is typed String even when null: parts must agree on the schema for polars to scan them
        "runs": res.summary.with_columns(**{k: pl.lit(v, dtype=pl.String) for k, v in extra.items()},
                                         **{k: pl.lit(v) for k, v in run.axes.items()}),
        "tasks": res.tasks.with_columns(run_hash=pl.lit(run.run_hash)),
        "histograms": res.histogram().with_columns(run_hash=pl.lit(run.run_hash)),
    }
    if res.timeseries is not None:
        tables["timeseries"] = res.timeseries.with_columns(run_hash=pl.lit(run.run_hash))
    if res.faults is not None:
        tables["faults"] = res.faults.with_columns(run_hash=pl.lit(run.run_hash))
    if out is not None:
        write_run(Path(out), run.run_hash, tables)
        return {"run_hash": run.run_hash, "ok": True}
    return {"run_hash": run.run_hash, "ok": True, "tables": tables}


def failed_row(run: RunSpec, error: str) -> pl.DataFrame:
    import polars as pl

    from .simulation import SUMMARY_SCHEMA
    from .strategy import resolve
    row = {k: None for k in SUMMARY_SCHEMA}
    try:
        spec = resolve(run.strategy)
        row.update(strategy=spec.name, strategy_version=spec.version, strategy_hash=spec.source_hash)
    except Exception:
        row.update(strategy=run.strategy)
    row.update(run_id=f"{run.scenario.get('name')}-{row['strategy']}-{run.seed}", scenario=run.scenario.get("name"),
               params=json.dumps(run.params, sort_keys=True), seed=run.seed,
               lbbench_version=__version__, schema_version=SCHEMA_VERSION)
    df = pl.DataFrame([row], schema=SUMMARY_SCHEMA)
    extra = {"sweep": run.sweep, "run_hash": run.run_hash, "status": "failed", "error": error}
    return df.with_columns(**{k: pl.lit(v) for k, v in extra.items()}, **{k: pl.lit(v) for k, v in run.axes.items()})


# --------------------------------------------------------------------------------------------
# The runner

def run_status(out: Path) -> dict[str, str]:
    """run_hash -> status ("ok" or "failed") of every run recorded under `out`."""
    runs_dir = out / "runs"
    if not (runs_dir.is_dir() and any(runs_dir.glob("*.parquet"))):
        return {}
    import polars as pl
    df = pl.read_parquet(str(runs_dir / "*.parquet"), columns=["run_hash", "status"], missing_columns="insert")
    return dict(zip(df["run_hash"], df["status"]))


def write_manifest(out: Path, sweep: Sweep, created: str, status: dict[str, str] | None = None) -> dict:
    """The sweep's manifest.json; `status` (run_hash -> status) as the runner kept it, else read
    from the runs/ parts."""
    from .store import write_text_atomic
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


# local workers beyond the CPUs only wait for them; far beyond, they exhaust memory
MAX_WORKERS = 4 * (os.cpu_count() or 1)


def run_sweep(sweep: Sweep, out: str | Path, *, workers: int | None = None, resume: bool = False,
              executor: str = "local", scheduler: str | None = None, progress: bool = True,
              timeout: float | None = None) -> dict:
    """Run every missing run of `sweep` into `out`; returns the manifest. `timeout`: seconds a
    run may take (local executor), after which it is stopped and recorded as failed."""
    from .store import prepare_out

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
    existing = out / "runs"
    if existing.is_dir() and any(existing.glob("*.parquet")) and not resume:
        raise UserError(f"{out} already holds results; add --resume to complete them, or choose another --out")
    prepare_out(out)
    pool = None
    if executor == "local":
        # before polars or the progress bar start threads here: the workers may be forked from
        # this process (pool.py)
        from .pool import Workers
        pool = Workers(min(workers, len(sweep.runs)), timeout=timeout)
    try:
        return _run(sweep, out, workers, resume, executor, scheduler, progress, pool)
    finally:
        if pool is not None:
            pool.close()


def _run(sweep, out, workers, resume, executor, scheduler, progress, pool) -> dict:
    from .store import clean_temporaries, write_tables, write_text_atomic

    clean_temporaries(out)
    # The runs' status, kept here as they are recorded: the manifest at the end needs no read of
    # the parts (nor polars, in a process whose workers wrote them)
    status = run_status(out) if resume else {}
    todo = [r for r in sweep.runs if status.get(r.run_hash) != "ok"]
    # grouped by strategy: a worker compiles or loads each strategy's kernel once
    todo.sort(key=lambda r: (r.strategy, r.seed))
    write_text_atomic(out / ("sweep.toml" if sweep.path is None or sweep.path.suffix == ".toml" else sweep.path.name), sweep.text)
    manifest_path = out / "manifest.json"
    created = json.loads(manifest_path.read_text())["created"] if manifest_path.exists() else time.strftime("%Y-%m-%dT%H:%M:%S%z")
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


def _run_pool(pool, todo, record, out):
    """The runs on the local workers, in `RunQueue` order. A run whose worker died or ran past
    the time limit is recorded as failed, without the parts it may have begun to write.
    Interrupted, the workers are killed before the caller writes the manifest."""
    from .store import remove_parts

    queue = RunQueue(todo)
    running = {}

    def fill():
        while pool.idle:
            r = queue.next()
            if r is None:
                return
            pool.submit(r.run_hash, execute, r, str(out))    # the worker writes the parts
            running[r.run_hash] = r
    try:
        fill()
        while running:
            finished = [(running.pop(key), result, error) for key, result, error in pool.results()]
            for r, _result, _error in finished:
                queue.finished(r)
            fill()              # the workers go on while this process records the results
            for r, result, error in finished:
                if error is not None:
                    remove_parts(out, r.run_hash)
                    result = {"run_hash": r.run_hash, "ok": False, "error": error}
                record(r, result)
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

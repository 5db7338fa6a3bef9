"""Synthetic results stores in the sweep output layout (no simulation), for analysis/report tests.

Each table is a folder of Parquet parts, one part per run, like the real store.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl

from lbbench.engine.metrics import bucket_edges

EDGES = bucket_edges()
STRATEGY_EFFECT = {"round_robin": 1.0, "least_load": 0.7, "power_of_d": 0.8}


def run_hash(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def histogram(latencies: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bucket_lo, bucket_hi, count) of the nonzero buckets, the engine's bucket rule."""
    b = np.searchsorted(EDGES, latencies, side="right") - 1
    counts = np.bincount(b, minlength=len(EDGES) - 1)
    nz = np.nonzero(counts)[0]
    return EDGES[nz], EDGES[nz + 1], counts[nz].astype(np.int64)


def full_counts(latencies: np.ndarray) -> np.ndarray:
    b = np.searchsorted(EDGES, latencies, side="right") - 1
    return np.bincount(b, minlength=len(EDGES) - 1).astype(np.int64)


def write_part(out: Path, table: str, name: str, df: pl.DataFrame) -> None:
    (out / table).mkdir(parents=True, exist_ok=True)
    df.write_parquet(out / table / f"{name}.parquet")


def write_store(out: Path, *, strategies=("round_robin", "least_load", "power_of_d"), rhos=(0.5, 0.8),
                seeds=range(5), speeds=([1.0, 1.0], [1.0, 2.0]), n_failed: int = 1, timeseries: bool = True,
                n_tasks: int = 6, n_lat: int = 400, seed: int = 12345, sweep_name: str = "synthetic-sweep",
                extra_columns=None) -> dict:
    """Write a store; return {run_id: latencies array} of the ok runs.

    `speeds` is a list of speed lists (a list column "cluster.speeds" per run) or a dict
    {variant name: speeds} (a string column "variant", as the sweep runner writes variants).
    `extra_columns(row) -> dict` adds columns to each ok run's row.
    """
    rng = np.random.default_rng(seed)
    out = Path(out)
    lat_by_run = {}
    count = 0
    variants = list(speeds.items()) if isinstance(speeds, dict) else [(None, sp) for sp in speeds]
    for variant, sp in variants:
        for rho in rhos:
            for s in seeds:
                common = rng.normal(0, 0.15)          # same seed => same arrivals => shared noise
                for strat in strategies:
                    count += 1
                    rid = f"synth-{strat}-{rho}-{'_'.join(map(str, sp))}-{s}"
                    rh = run_hash(rid)
                    base = 0.010 / (1 - rho) * (1.3 if sp[1] == 2.0 else 1.0)
                    scale = base * STRATEGY_EFFECT[strat] * np.exp(common + rng.normal(0, 0.05))
                    lat = scale * rng.lognormal(0.0, 0.6, n_lat)
                    lat_by_run[rid] = lat
                    row = {
                        "run_id": rid, "run_hash": rh, "sweep": sweep_name, "scenario": "seed-mesh",
                        "strategy": strat, "strategy_version": "1", "strategy_hash": "abc",
                        "params": json.dumps({"d": 2} if strat == "power_of_d" else {}), "seed": s,
                        "nodes": 2, "tasks": n_tasks, "workers": 1, "rho": float(rho), "rate": 100.0 * rho,
                        "mode": "per_node", "info": "global", "hop": 0.0, "requests": n_lat, "arrived": n_lat,
                        "completed": n_lat, "rejected": 0, "failed": 0, "in_flight": 0,
                        "latency_mean": float(lat.mean()), "latency_p50": float(np.quantile(lat, 0.5)),
                        "latency_p90": float(np.quantile(lat, 0.9)), "latency_p99": float(np.quantile(lat, 0.99)),
                        "latency_p999": float(np.quantile(lat, 0.999)), "latency_max": float(lat.max()),
                        "throughput": 100.0 * rho, "util_mean": rho, "util_max": min(1.0, rho * 1.2),
                        "imbalance_cov": 0.1, "imbalance_max_mean": 1.2, "jain": 0.95, "cross_node_frac": 0.5,
                        "sim_time": 10.0, "wall_s": 0.1, "req_per_s": 1e4, "lbbench_version": "0.1.0",
                        "schema_version": 1, "workload.rho": float(rho), "cluster.speeds": sp,
                        "status": "ok", "error": None,
                    }
                    if variant is not None:   # as the sweep runner writes [[variants]]
                        del row["cluster.speeds"]
                        row["variant"] = variant
                    if extra_columns is not None:
                        row.update(extra_columns(row))
                    write_part(out, "runs", rid, pl.DataFrame([row], schema_overrides={"error": pl.String}))
                    util = np.clip(rho * (1 + rng.normal(0, 0.2 * STRATEGY_EFFECT[strat], n_tasks)), 0, 1)
                    write_part(out, "tasks", rid, pl.DataFrame({
                        "run_id": [rid] * n_tasks, "run_hash": [rh] * n_tasks, "task": np.arange(n_tasks, dtype=np.int32),
                        "service": ["web"] * n_tasks, "node": np.arange(n_tasks) % 2, "speed": [1.0] * n_tasks,
                        "workers": [1] * n_tasks, "served": rng.integers(50, 100, n_tasks),
                        "busy_s": util * 10, "utilisation": util}))
                    lo, hi, c = histogram(lat)
                    write_part(out, "histograms", rid, pl.DataFrame({
                        "run_hash": [rh] * len(c), "run_id": [rid] * len(c), "bucket_lo": lo, "bucket_hi": hi, "count": c}))
                    if timeseries:
                        w = 20
                        t0 = np.arange(w) * 0.5
                        write_part(out, "timeseries", rid, pl.DataFrame({
                            "run_hash": [rh] * w, "run_id": [rid] * w, "window": np.arange(w), "t_start": t0,
                            "t_end": t0 + 0.5, "arrivals": rng.integers(40, 60, w), "completed": rng.integers(40, 60, w),
                            "throughput": 100 * rho + rng.normal(0, 5, w),
                            "latency_mean": scale * (1 + rng.random(w)), "latency_p99": scale * (4 + rng.random(w)),
                            "rejected": np.zeros(w, dtype=np.int64), "failed": np.zeros(w, dtype=np.int64),
                            "util_node_0": rng.random(w), "util_node_1": rng.random(w)}))
    for k in range(n_failed):
        rid = f"synth-broken-{k}"
        # all metrics None: these columns have polars dtype Null in this part (a schema mismatch
        # that load() must cope with)
        write_part(out, "runs", rid, pl.DataFrame([{
            "run_id": rid, "run_hash": run_hash(rid), "sweep": sweep_name, "scenario": "seed-mesh",
            "strategy": "least_load", "params": "{}", "seed": 99, "rho": None, "latency_mean": None,
            "latency_p99": None, "workload.rho": 0.8, "cluster.speeds": list(variants[0][1]),
            "status": "failed", "error": "StrategyError: synthetic failure\nsecond line"}]))
    (out / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "lbbench_version": "0.1.0", "sweep": sweep_name, "grid_size": count + n_failed,
        "completed": count, "failed": n_failed, "created": "2025-01-01T00:00:00Z"}))
    (out / "sweep.toml").write_text(f'name = "{sweep_name}"\nscenario = "seed-mesh"\n[grid]\n"workload.rho" = {list(rhos)}\n')
    return lat_by_run

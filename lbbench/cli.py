"""The `lbbench` command line. Each verb is one function; bad input exits 2 with one line."""
from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path

import click

from .errors import StrategyError, UserError


def _fail(msg: str, code: int = 2):
    click.echo(f"lbbench: error: {msg}", err=True)
    sys.exit(code)


def _parse_params(items: tuple[str, ...]) -> dict:
    from .model.scenario import parse_value
    out = {}
    for it in items:
        if "=" not in it:
            raise UserError(f"--param {it!r}: expected NAME=VALUE, e.g. --param d=2")
        k, v = it.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lbbench")
def cli():
    """lbbench: load-balancing strategies on a simulated container ingress mesh."""


@cli.command()
def strategies():
    """List the registered strategies, one line each."""
    from .plugins.strategy import registry
    for name, (spec, origin) in sorted(registry().items()):
        click.echo(spec.summary_line())


@cli.command()
@click.argument("strategy")
@click.option("--param", "-p", multiple=True, help="strategy parameter NAME=VALUE to check with (repeatable)")
def check(strategy, param):
    """Run STRATEGY (a name or FILE.py:NAME) on small scenarios and report contract faults.

    Exit code 0 when clean, 1 with findings, 2 when STRATEGY cannot be loaded."""
    from .experiments.checker import check_strategy
    from .plugins.strategy import name_clash
    report = check_strategy(strategy, _parse_params(param))
    click.echo(report.format())
    clash = name_clash(strategy)
    if clash:
        click.echo(f"warning: {clash}")
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("scenario", required=False)
def presets(scenario):
    """List the built-in scenarios, or print one (or a TOML file) fully resolved."""
    from .model.scenario import PRESETS, load_scenario
    if scenario is None:
        for name, data in sorted(PRESETS.items()):
            sc = load_scenario(name)
            click.echo(f"{name}: {sc.cluster.nodes} nodes, {sum(s.replicas for s in sc.services)} tasks, "
                       f"mode {sc.balancer.mode}, info {sc.balancer.info}, hop {sc.network.hop} s")
        return
    import json
    click.echo(json.dumps(load_scenario(scenario).model_dump(), indent=2))


def _fmt_s(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 1:
        return f"{x:.3f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3f} ms"
    return f"{x * 1e6:.1f} us"


def print_summary(row: dict, unstable: str = "") -> None:
    click.echo(f"{row['scenario']} / {row['strategy']}  seed {row['seed']}  "
               f"({row['nodes']} nodes, {row['tasks']} tasks, mode {row['mode']}, info {row['info']}, rho {row['rho']:.3g}"
               + (f", {row['users']:,} users (closed loop)" if row.get("users") else "")
               + (f", {row['sessions']:,} sessions" if row.get("sessions") else "") + ")")
    click.echo(f"  requests   {row['requests']:,} simulated, {row['arrived']:,} measured after warm-up")
    click.echo(f"  outcome    completed {row['completed']:,}  rejected {row['rejected']:,}  failed {row['failed']:,}  in flight {row['in_flight']:,}")
    if row["faults"] or row["retried"] or row["timed_out"]:
        rec = row["recovery_s"]
        click.echo(f"  faults     {row['faults']} scheduled, {row['crashes']} task crashes  retried {row['retried']:,}  "
                   f"timed out {row['timed_out']:,}  availability {row['availability']:.4%}  "
                   f"recovery {'-' if rec is None or math.isnan(rec) else f'{rec:g} s'}")
    click.echo(f"  latency    mean {_fmt_s(row['latency_mean'])}  p50 {_fmt_s(row['latency_p50'])}  p90 {_fmt_s(row['latency_p90'])}  "
               f"p99 {_fmt_s(row['latency_p99'])}  p99.9 {_fmt_s(row['latency_p999'])}  max {_fmt_s(row['latency_max'])}")
    click.echo(f"  load       offered {row['offered_rate_mean']:.4g} req/s  throughput {row['throughput']:.4g} req/s  utilisation mean {row['util_mean']:.3f} max {row['util_max']:.3f}")
    click.echo(f"  imbalance  CoV {row['imbalance_cov']:.4f}  max/mean {row['imbalance_max_mean']:.4f}  Jain {row['jain']:.4f}  "
               f"cross-node {row['cross_node_frac']:.3f}")
    click.echo(f"  speed      {row['wall_s']:.2f} s wall, {row['req_per_s'] / 1e6:.2f} M simulated req/s")
    if unstable:
        click.echo(f"  UNSTABLE   {unstable}; the latency figures above depend on the run's length, "
                   "not steady-state values")


@cli.command()
@click.argument("scenario")
@click.option("--strategy", "-s", default="round_robin", show_default=True, help="registered name or FILE.py:NAME")
@click.option("--param", "-p", multiple=True, help="strategy parameter NAME=VALUE (repeatable)")
@click.option("--set", "sets", multiple=True, help="scenario override KEY=VALUE by dotted path (repeatable)")
@click.option("--requests", "-n", type=int, help="shorthand for --set run.requests=N")
@click.option("--duration", type=float, help="shorthand for --set run.duration=SECONDS")
@click.option("--seed", type=int, help="shorthand for --set run.seed=N")
@click.option("--out", "-o", type=click.Path(), help="output folder [default: results/runs-<timestamp>]")
@click.option("--no-write", is_flag=True, help="print the summary only")
@click.option("--one-thread", is_flag=True,
              help="draw the arrivals on the simulation's own thread (default: the next chunk on a second "
                   "thread while the kernel runs, where more than one CPU is available; results are the same)")
def run(scenario, strategy, param, sets, requests, duration, seed, out, no_write, one_thread):
    """Simulate SCENARIO (a preset or a TOML file) with one strategy.

    The run's parts are named by its identity (lbbench.engine.identity): a different run into the same
    --out is kept beside the others, the same run again replaces its own row."""
    from .engine.identity import run_identity
    from .model.scenario import load_scenario, parse_override
    from .engine.run import simulate
    from .results.store import FolderLock, prepare_out, write_run
    from .plugins.strategy import resolve
    overrides = dict(parse_override(s) for s in sets)
    if requests is not None:
        overrides["run.requests"] = requests
    if duration is not None:
        overrides["run.duration"] = duration
    if seed is not None:
        overrides["run.seed"] = seed
    sc = load_scenario(scenario, overrides)
    spec = resolve(strategy)
    params = spec.resolve_params(_parse_params(param))
    lock = None
    if not no_write:
        run_hash = run_identity(sc, spec, params, sc.run.seed)[0]
        out_dir = Path(out) if out else Path("results") / time.strftime(f"runs-%Y%m%d-%H%M%S-{run_hash[:8]}")
        if (out_dir / "manifest.json").exists():
            raise UserError(f"--out {str(out_dir)!r} holds a sweep's results; give lbbench run another folder")
        lock = FolderLock(prepare_out(out_dir))     # one writer at a time, until this run is written
    try:
        res = simulate(sc, spec, params, prefetch=False if one_thread else None)
        row = res.row()
        print_summary(row, res.extra.get("unstable", ""))
        if lock is not None:
            import polars as pl
            run_hash = res.extra["run_hash"]
            tables = {"tasks": res.tasks, "timeseries": res.timeseries, "faults": res.faults,
                      "nodes": res.nodes, "events": res.events,
                      "runs": res.summary.with_columns(run_hash=pl.lit(run_hash))}
            write_run(out_dir, run_hash, {k: v for k, v in tables.items() if v is not None})
            click.echo(f"  written    {out_dir}/{{{','.join(k for k, v in tables.items() if v is not None)}}}/{run_hash}.parquet "
                       f"(run {row['run_id']})")
    finally:
        if lock is not None:
            lock.release()


@cli.command()
@click.argument("sweep_file", type=click.Path())
@click.option("--out", "-o", type=click.Path(), help="output folder [default: results/<sweep name>]")
@click.option("--workers", "-w", type=int, help="parallel runs [default: all cores]")
@click.option("--resume", is_flag=True, help="run only the runs missing from --out")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True)
@click.option("--scheduler", help="Dask scheduler address (tcp://host:8786); default: a local Dask cluster")
@click.option("--dry-run", is_flag=True, help="print the grid size and first rows, run nothing")
@click.option("--report/--no-report", "with_report", default=False, help="write the report when done")
@click.option("--yes", is_flag=True, help="run a grid of more than 10,000 runs")
@click.option("--timeout", type=float, help="seconds a run may take; past them it is stopped and recorded as failed")
def sweep(sweep_file, out, workers, resume, executor, scheduler, dry_run, with_report, yes, timeout):
    """Run every point of a sweep file's grid, in parallel, resumably."""
    if executor == "local" and not dry_run:
        from .experiments.pool import prepare
        prepare()           # the compiled side, for the workers to be forked from this process
    from .results.store import safe_name
    from .experiments.sweep import MAX_RUNS, grid_table, load_sweep, run_sweep
    sw = load_sweep(sweep_file, max_runs=None if yes else MAX_RUNS)
    out_dir = Path(out) if out else Path("results") / safe_name(sw.name)
    if dry_run:
        import polars as pl
        click.echo(f"sweep {sw.name}: {len(sw.runs)} runs -> {out_dir}")
        with pl.Config(tbl_rows=10, tbl_cols=12, fmt_str_lengths=40, tbl_hide_dataframe_shape=True):
            click.echo(grid_table(sw))
        return
    t0 = time.perf_counter()
    manifest = run_sweep(sw, out_dir, workers=workers, resume=resume, executor=executor, scheduler=scheduler,
                         timeout=timeout)
    dt = time.perf_counter() - t0
    click.echo(f"sweep {sw.name}: {manifest['completed']}/{manifest['grid_size']} runs ok, "
               f"{manifest['failed']} failed, {dt:.1f} s -> {out_dir}")
    if with_report:
        _report(out_dir)
    if manifest["failed"]:
        sys.exit(1)


def _report(out_dir: Path) -> None:
    from .results.report import write_report
    md, pngs = write_report(out_dir)
    click.echo(f"report: {md}")
    for p in pngs:
        click.echo(f"figure: {p}")


@cli.command()
@click.argument("results_dir", type=click.Path())
def report(results_dir):
    """Write report.md and PNG figures for a sweep's results folder."""
    p = Path(results_dir)
    if not (p / "runs").is_dir():
        raise UserError(f"{results_dir!r} holds no runs/ folder; give a sweep's output folder (e.g. results/seed_mesh)")
    _report(p)


@cli.command()
@click.option("--quick", is_flag=True, help="fewer seeds and requests (well under a minute)")
def validate(quick):
    """Check the simulator against queueing theory; exit 1 if a case fails."""
    from .results.validate import all_passed, format_table, run_validation
    rows = run_validation(quick=quick)
    click.echo(format_table(rows))
    if not all_passed(rows):
        sys.exit(1)


@cli.group()
def profile():
    """Convert public traces to a rate profile CSV (workload.profile_csv)."""


@profile.command("azure-functions")
@click.argument("file", type=click.Path())
@click.option("--function", "function", required=True, help="the HashFunction of the function to extract")
@click.option("--out", type=click.Path(), default=None, help="the CSV to write (default: standard output)")
def azure_functions(file, function, out):
    """A `time,rate` CSV from one function of the Azure Functions 2019 trace (FILE: one day's
    invocations_per_function_md.anon.dNN.csv; one row per minute, rate = invocations / 60)."""
    from .model.profile import azure_functions_profile
    t, r = azure_functions_profile(file, function)
    text = "time,rate\n" + "".join(f"{a:g},{float(b)!r}\n" for a, b in zip(t, r))
    if out is None:
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text)
        click.echo(f"wrote {out}: {len(t)} minutes, mean rate {r.mean():.6g} req/s")


@cli.command()
@click.argument("name", required=False)
@click.option("--list", "list_", is_flag=True, help="list the cases, one line each")
@click.option("--quick", is_flag=True, help="the case's small budget (seconds; what the tests run)")
@click.option("--big", is_flag=True, help="add the case's optional largest sizes (supermarket: n = 10,000)")
@click.option("--out", "-o", type=click.Path(), help="output folder [default: results/papers/NAME]")
@click.option("--workers", "-w", type=int, help="parallel runs [default: all cores]")
def reproduce(name, list_, quick, big, out, workers):
    """Run a published result's sweep and write report.md: published value, lbbench's, 95% CI, verdict.

    The runs are kept under OUT/data/ and resumed: the same command again reruns nothing and
    writes the same report."""
    if list_:
        from .experiments.reproduce import cases
        for case in cases().values():
            click.echo(f"{case.name}: {case.title}")
        return
    if name is None:
        raise UserError("reproduce: give a case name, or --list to see them")
    from .experiments.pool import prepare
    prepare()           # before polars starts threads: the sweep's workers fork from this process
    from .experiments.reproduce import run_case
    md, outcome = run_case(name, out, quick=quick, big=big, workers=workers)
    for r in outcome.rows:
        click.echo(f"{r.label}: published {r.published}; lbbench {r.value} {r.ci}; {r.verdict}")
    click.echo(f"report: {md}")


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread; BaseException, like KeyboardInterrupt, so
    that no `except Exception` takes it for a failed run."""


def _interrupted(signum, frame):
    raise Interrupted(signum)


def main(argv=None):
    """Console entry point: one-line errors, exit 2 for bad input, never a traceback."""
    if argv is None:
        # Ctrl-C and SIGTERM stop any command: "lbbench: error: interrupted", exit 128 + signal
        signal.signal(signal.SIGINT, _interrupted)
        signal.signal(signal.SIGTERM, _interrupted)
    try:
        _dispatch(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
    if argv is None:
        # The console command: every result file is closed and renamed by now, so skip the
        # interpreter's teardown of numba, LLVM and polars (0.2 to 0.9 s of a short command).
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (BrokenPipeError, ValueError):
            pass
        os._exit(code)
    sys.exit(code)


def _dispatch(argv):
    try:
        cli.main(args=argv, prog_name="lbbench", standalone_mode=False)
    except UserError as exc:
        _fail(str(exc), 2)
    except StrategyError as exc:
        _fail(str(exc), 1)
    except click.exceptions.NoSuchOption as exc:
        _fail(f"{exc.format_message()} (see lbbench {exc.ctx.command.name if exc.ctx else ''} --help)", 2)
    except click.UsageError as exc:
        _fail(exc.format_message(), 2)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Interrupted as exc:
        _fail("interrupted" if exc.args[0] == signal.SIGINT else "terminated", 128 + exc.args[0])
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:      # a path the system refuses (too long, no permission, no space left)
        where = f" {str(exc.filename)[:80]!r}" if exc.filename else ""
        _fail(f"cannot use{where}: {exc.strerror or exc}; give another path or free the resource", 2)


if __name__ == "__main__":
    main()

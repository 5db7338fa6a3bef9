"""`lbbench reproduce NAME`: one published result, run and set side by side with lbbench's.

A case (`lbbench/experiments/papers.py`, one declarative `Case` each) names its source, the
conditions, its sweeps (plain sweep dicts, run by the sweep runner of `sweep.py`, so workers,
`--resume` and the Parquet store work as for `lbbench sweep`), and a builder that turns the
runs into the result: the headline table (published value, lbbench's value, 95% CI, verdict),
more tables, notes and figures. `reproduce` writes `report.md` and `figures/*.png` under the
output folder (default `results/papers/NAME/`) and each sweep's store under `data/<sweep>/`.

Seeds are fixed in the case, and a sweep that is already complete under `data/` is not run
again (it is resumed: a missing or failed run runs, nothing else), so the same command writes
the same report. A case may also compute part of its result without simulating (host-loss calls
the hashing strategies' table functions directly); it says so in its conditions.

`quick=True` is each case's small budget (small n, few requests; the test suite runs it and
asserts every verdict); the committed reports are the full budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError


@dataclass
class Row:
    """One line of the headline table: the published value (a number or words), lbbench's
    value with its CI half-width, and the verdict; `ok` is whether the claim holds in lbbench,
    and the tests of `--quick` require ok == expect."""

    label: str
    published: str
    value: str
    ci: str
    verdict: str
    ok: bool
    expect: bool = True      # False: the claim is known not to hold here (the report says why)


@dataclass
class Outcome:
    rows: list[Row]
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[tuple[str, object]] = field(default_factory=list)    # (file stem, matplotlib Figure)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Budget:
    quick: bool = False
    big: bool = False        # the optional largest sizes (supermarket: n = 10,000)


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    source: str                                   # authors, venue, year, figure or table
    conditions: str                               # the exact conditions, Markdown
    sweeps: Callable[[Budget], list[dict]]        # sweep dicts for load_sweep (names unique in the case)
    build: Callable[["Context"], Outcome]
    big: str = ""                                 # what --big adds, if anything
    ci: str = "the 95% Student-t CI over independent seeds"


@dataclass
class Context:
    """What a builder reads: the budget and each sweep's runs (a polars DataFrame of the ok rows)."""

    case: Case
    budget: Budget
    out: Path
    data: dict[str, object]

    def runs(self, sweep: str):
        return self.data[sweep]


def cases() -> dict[str, Case]:
    from .papers import CASES
    return {c.name: c for c in CASES}


def get(name: str) -> Case:
    known = cases()
    if name not in known:
        raise UserError(f"reproduce: no case named {name!r}; the cases are {', '.join(known)} (lbbench reproduce --list)")
    return known[name]


def run_case(name: str, out: str | Path | None = None, *, quick: bool = False, big: bool = False,
             workers: int | None = None, progress: bool = True) -> tuple[Path, Outcome]:
    """Run case `name`'s sweeps (resuming what is there) and write its report; returns the
    report's path and the outcome."""
    import polars as pl

    from ..results.analysis import load
    from .sweep import load_sweep, run_sweep
    case = get(name)
    budget = Budget(quick=quick, big=big)
    if big and not case.big:
        raise UserError(f"reproduce {name}: --big adds nothing to this case; leave it out")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UserError(f"--workers must be a whole number from 1, got {workers!r}")
    out = Path(out) if out is not None else Path("results") / "papers" / (name + ("-quick" if quick else ""))
    data = {}
    for sw in case.sweeps(budget):
        sweep = load_sweep(sw)
        folder = out / "data" / sweep.name
        manifest = run_sweep(sweep, folder, workers=workers, resume=True, progress=progress)
        if manifest["failed"]:
            raise UserError(f"reproduce {name}: {manifest['failed']} runs of sweep {sweep.name} failed (see {folder}/runs); "
                            "fix the cause and run the command again (it resumes)")
        data[sweep.name] = load(folder).filter(pl.col("status") == "ok").collect()
    outcome = case.build(Context(case, budget, out, data))
    return write_report(case, budget, out, outcome), outcome


# --------------------------------------------------------------------------------------------
# Formatting helpers shared by the cases


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def fmt_ci(ci: float, digits: int = 2) -> str:
    return "-" if ci is None or not math.isfinite(ci) else f"± {ci:.{digits}g}"


def mean_ci(df, by: list[str], metric: str):
    """Mean and 95% CI half-width of `metric` per group of `by` (lbbench.results.analysis.summarize)."""
    from ..results.analysis import summarize
    return summarize(df.lazy(), by=by, metrics=[metric]).collect()


def _command(case: Case, budget: Budget) -> str:
    return f"lbbench reproduce {case.name}" + (" --quick" if budget.quick else "") + (" --big" if budget.big else "")


def write_report(case: Case, budget: Budget, out: Path, outcome: Outcome) -> Path:
    from ..results.report import _table
    from ..results.store import write_text_atomic
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {case.title}", "", f"**Source.** {case.source}", "",
             f"Regenerate (same seeds, same numbers): `{_command(case, budget)}`"
             + ("" if budget.quick else f" (writes `results/papers/{case.name}/`)") + ".", "",
             "## Conditions", "", case.conditions.strip(), "", "## Result", "",
             f"Published value against lbbench's, with {case.ci}.", "",
             _table(["case", "published", "lbbench", "95% CI", "verdict"],
                    [[r.label, r.published, r.value, r.ci, r.verdict] for r in outcome.rows]), ""]
    for title, header, rows in outcome.tables:
        lines += [f"### {title}", "", _table(header, rows), ""]
    if outcome.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in outcome.notes] + [""]
    if outcome.figures:
        lines += ["## Figures", ""]
        for stem, fig in outcome.figures:
            path = figdir / f"{stem}.png"
            fig.savefig(path, dpi=110, metadata={"Software": None})
            lines += [f"![{stem}](figures/{path.name})", ""]
    md = out / "report.md"
    write_text_atomic(md, "\n".join(lines))
    return md

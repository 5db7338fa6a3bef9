"""`lbbench reproduce`: every case's quick budget runs and reproduces its effects.

Each case's `--quick` budget (small n, few requests, fixed seeds) runs through the sweep runner
into a temporary folder, and every headline row of its report must come out as the case
expects: the direction and size of each effect, judged on 95% confidence intervals over the
seeds by the case's builder (lbbench/experiments/papers.py). A row the case marks
`expect=False` is a published claim lbbench is known not to reproduce, for a reason its report
gives (maglev's disruption at 500 tasks with its default table of 65,537 slots); it must keep
not holding, or the report would be wrong.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from lbbench.cli import main
from lbbench.experiments import reproduce as R
from lbbench.experiments.papers import hash_owners, power_of_d_mean_field_sojourn

NAMES = ["supermarket", "stale-information", "bounded-load-hashing", "host-loss", "jiq", "sita", "prequal"]
# The suite runs the quick budgets of the cases whose strategies the rest of it compiles anyway;
# bounded-load-hashing and jiq compile kernels of their own (about 25 s each on an empty cache),
# and run with LBBENCH_REPRODUCE=all (bounded_hash's cap is tested in tests/test_bounded_hash.py).
# sita compiles nothing new but simulates for about 7 s (heavy-tailed demand needs long runs):
# LBBENCH_REPRODUCE=all too (its strategies are checked against theory in tests/test_sita.py).
# prequal runs on shared nodes (docs/model.md, "Nodes as shared machines"): cores and
# background load compile kernels of their own for its three strategies, so LBBENCH_REPRODUCE=all.
RUN = NAMES if os.environ.get("LBBENCH_REPRODUCE") == "all" else ["supermarket", "stale-information", "host-loss"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    out = tmp_path_factory.mktemp("papers")
    return {name: (out / name, *R.run_case(name, out / name, quick=True, workers=1, progress=False)) for name in RUN}


def test_every_case_is_listed(capsys):
    assert list(R.cases()) == NAMES
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--list"])
    assert exc.value.code == 0
    listed = [line.split(":", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == NAMES


@pytest.mark.parametrize("name", RUN)
def test_quick_case_reproduces_its_effects(outcomes, name):
    out, md, outcome = outcomes[name]
    assert outcome.rows, name
    for row in outcome.rows:
        assert row.ok == row.expect, f"{name}: {row}"
    text = md.read_text()
    assert text.count("\n| ") >= len(outcome.rows) + 1
    for stem, _ in outcome.figures:
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000


def test_supermarket_quick_sizes(outcomes):
    # the headline cells: d = 1 is M/M/1 (within its CI + 2%), d = 2 within CI + 5% of the mean
    # field (finite n = 100 is slower, by about 1-2%), and far below d = 1 at rho = 0.9
    rows = {r.label: r for r in outcomes["supermarket"][2].rows}
    v = {k: float(r.value) for k, r in rows.items()}
    assert v["n=100 d=2 rho=0.9"] < 0.3 * v["n=100 d=1 rho=0.9"]
    assert v["n=100 d=2 rho=0.9"] > power_of_d_mean_field_sojourn(2, 0.9) * 0.995


def test_a_report_regenerates_with_the_same_numbers(outcomes, tmp_path):
    out, md, _ = outcomes["supermarket"]
    again, _ = R.run_case("supermarket", out, quick=True, workers=1, progress=False)     # resumed: nothing runs
    assert again.read_text() == md.read_text()
    fresh, _ = R.run_case("supermarket", tmp_path / "fresh", quick=True, workers=1, progress=False)
    assert fresh.read_text() == md.read_text()


def test_ring_hash_moves_at_most_twice_the_optimum_for_one_lost_task():
    # host-loss's must-hold, on the strategies' own table functions: 500 tasks, 10,000 clients
    full = np.arange(500, dtype=np.int32)
    clients = np.arange(10_000)
    before = hash_owners("ring_hash", full, clients)
    for gone in (499, 0, 250):
        after = hash_owners("ring_hash", np.setdiff1d(full, [gone]).astype(np.int32), clients)
        moved = before != after
        assert moved.mean() <= 2 / 500
        assert set(before[moved]) == {gone}          # only the lost task's clients move
    # maglev refills its table: more than the lost task's clients move (its report says how many)
    after = hash_owners("maglev", full[:-1], clients)
    assert (hash_owners("maglev", full, clients) != after).mean() > 2 / 500


def test_host_loss_maglev_meets_the_bound_with_a_large_table(outcomes):
    # the must-hold row by row: ring_hash and maglev with M = 1,048,573 within 2x of the optimum
    # at the upper end of the 95% CI, maglev with Envoy's default M = 65,537 above it at the lower end
    out, md, outcome = outcomes["host-loss"]
    rows = {r.label.split(":")[0]: r for r in outcome.rows}
    assert list(rows) == ["ring_hash", "maglev, M = 65,537 (Envoy's default)", "maglev, M = 1,048,573"]
    assert rows["ring_hash"].ok and rows["maglev, M = 1,048,573"].ok
    assert rows["maglev, M = 1,048,573"].verdict == "holds"
    assert rows["maglev, M = 65,537 (Envoy's default)"].verdict.startswith("does not hold")
    detail = {(r[0], r[1]): r for r in outcome.tables[0][2]}
    lo, hi = (float(x.rstrip("x")) for x in detail[("maglev, M = 1,048,573", "1")][5].split(" to "))
    assert 1.0 <= lo < hi <= 2.0
    lo, hi = (float(x.rstrip("x")) for x in detail[("maglev, M = 65,537 (Envoy's default)", "1")][5].split(" to "))
    assert 2.0 < lo < hi
    assert "| maglev, M = 1,048,573: one of 500 tasks lost |" in md.read_text()


def test_bad_reproduce_input_is_one_line(capsys, tmp_path):
    for args, said in ((["reproduce", "nosuch"], "no case named"), (["reproduce"], "--list"),
                       (["reproduce", "host-loss", "--big"], "--big adds nothing")):
        with pytest.raises(SystemExit) as exc:
            main(args + ["--out", str(tmp_path / "o")])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
        assert not (tmp_path / "o").exists()

"""The compiled engine agrees request by request with the slow reference simulator (naive.py).

Every case runs under the three built-in strategies and both kernel paths: the default one
(the "direct" path when nothing observes in-flight requests, see engine.DIRECT) and the
general heap path (force_heap=True). Each case also checks that the feature it is about
actually happened (crossings, rejections, parallel workers, ...), so an agreement cannot be
vacuous.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from lbbench.model.scenario import PRESETS
from lbbench.engine.run import simulate

from naive import COMPLETED, IN_FLIGHT, REJECTED, simulate_naive
from simcheck import STRATEGIES, arrivals, assert_counters_match, assert_trace_matches, engine_path, scenario


def _preset(name, requests):
    d = copy.deepcopy(PRESETS[name])
    d["run"]["requests"] = requests
    return d


TWO_SERVICES = [
    {"name": "a", "port": 80, "replicas": 3, "workers": 1, "demand": {"dist": "exponential", "mean": 1.0}},
    {"name": "b", "port": 81, "replicas": 2, "workers": 2, "demand": {"dist": "lognormal", "mean": 0.5, "cv": 1.5}},
]

# name -> (scenario dict, what must be seen in the run)
CASES = {
    "central_global": (scenario(mode="central", info="global", replicas=5), set()),
    "per_node_hop": (scenario(hop=0.05), {"cross"}),
    "hop_jitter_local": (scenario(hop=0.05, jitter=0.08, info="local"), {"cross"}),
    "jitter_no_hop": (scenario(jitter=0.1, mode="central"), {"cross"}),
    "workers3": (scenario(workers=3, replicas=3, rho=0.85, dist="deterministic"), {"parallel"}),
    "speeds": (scenario(nodes=4, replicas=6, speeds=[0.5, 1.0, 2.0, 1.5], rho=0.85), {"speeds"}),
    "queue_limit": (scenario(queue_limit=1, rho=0.95, rr_start="zero"), {"reject"}),
    "queue_limit_everything": (scenario(nodes=4, speeds=[1.0, 0.5, 2.0, 1.0], replicas=5, workers=2, queue_limit=2,
                                        rho=1.1, hop=0.05, jitter=0.05, info="stale:0.5", dist="hyperexp"),
                               {"reject", "cross", "parallel", "speeds"}),
    "local_per_node": (scenario(info="local", hop=0.02, nodes=4, replicas=5), {"cross"}),
    "local_central": (scenario(info="local", mode="central"), set()),
    "stale": (scenario(info="stale:0.5"), set()),
    "stale_central_hop_jitter": (scenario(info="stale:2", mode="central", hop=0.1, jitter=0.05), {"cross"}),
    "piggyback_per_node_hop": (scenario(info="piggyback", hop=0.05, nodes=4, replicas=5, rho=0.9), {"cross"}),
    "piggyback_central_queue_limit": (scenario(info="piggyback", mode="central", workers=2, queue_limit=2, rho=1.05),
                                      {"reject", "parallel"}),
    "single_entry_hop": (scenario(entry="single:0", hop=0.05, replicas=5), {"cross"}),
    "weighted_entry": (scenario(entry=[0.6, 0.0, 0.4], hop=0.03, workers=2), {"cross", "parallel"}),
    "two_services": (scenario(services=TWO_SERVICES, hop=0.01, rho=0.75), {"cross", "parallel"}),
    "no_drain": (scenario(drain=False, rho=0.9, hop=0.02), {"in_flight", "cross"}),
    "warmup_half": (scenario(warmup=0.5, rr_start="zero", nodes=2, replicas=3), set()),
    "preset_seed_mesh": (_preset("seed-mesh", 2000), {"cross"}),
    "preset_reference": (_preset("reference", 2000), set()),
}

PATHS = {"auto": False, "heap": True}


def _check_features(sc, res, features):
    row, tr = res.row(), res.trace
    status = tr["status"].to_numpy()
    if "cross" in features:
        assert row["cross_node_frac"] > 0
    if "reject" in features:
        assert row["rejected"] > 0 and (status == REJECTED).any()
        assert np.isnan(tr["start"].to_numpy()[status == REJECTED]).all()
    if "in_flight" in features:
        assert row["in_flight"] > 0 and (status == IN_FLIGHT).any()
    else:
        assert row["in_flight"] == 0 and not (status == IN_FLIGHT).any()
    if "parallel" in features:
        # some task serves two requests at once (the workers really run side by side)
        task, start, done = (tr[c].to_numpy() for c in ("task", "start", "done"))
        ok = ~np.isnan(start)
        overlap = False
        for k in np.unique(task[ok]):
            m = ok & (task == k)
            order = np.argsort(start[m], kind="stable")
            s, d = start[m][order], done[m][order]
            overlap |= bool((s[1:] < np.maximum.accumulate(d)[:-1]).any())
        assert overlap
    if "speeds" in features:
        # service time is demand / speed of the task's node, on nodes of different speeds
        arr, cl = arrivals(sc)
        demand = arr.demand
        m = status == COMPLETED
        k = tr["task"].to_numpy()[m]
        svc = tr["done"].to_numpy()[m] - tr["start"].to_numpy()[m]
        np.testing.assert_allclose(svc * cl.task_speed[k], demand[m], rtol=1e-9)
        assert len(np.unique(cl.task_speed[k])) >= 2


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", list(CASES))
def test_engine_matches_naive(case, strategy, path):
    sc, features = CASES[case]
    res = simulate(sc, strategy, trace=True, force_heap=PATHS[path], progress=False)
    ref = simulate_naive(sc, strategy)
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)
    # per-task counters too
    np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)
    np.testing.assert_allclose(res.tasks["busy_s"].to_numpy(), ref.task_busy, rtol=1e-9)
    _check_features(sc, res, features)


# The default path really is the direct one where it may be (so "auto" above tests it), and
# the general one elsewhere.
DIRECT = [("central_global", "round_robin"), ("central_global", "random"), ("workers3", "round_robin"),
          ("speeds", "random"), ("stale", "round_robin"), ("single_entry_hop", "round_robin"), ("workers3", "random"),
          ("single_entry_hop", "random"), ("preset_seed_mesh", "round_robin"),
          ("preset_reference", "random"), ("warmup_half", "round_robin"),
          # a hop and several entry nodes: the direct path's transit ring
          ("per_node_hop", "round_robin"), ("weighted_entry", "round_robin"), ("two_services", "random")]
HEAP = [("central_global", "least_load"), ("jitter_no_hop", "random"),
        ("queue_limit", "round_robin"), ("no_drain", "random"), ("preset_seed_mesh", "least_load")]


@pytest.mark.parametrize("case,strategy", DIRECT + HEAP)
def test_path_selection(case, strategy):
    sc = CASES[case][0]
    assert engine_path(sc, strategy, False) == ("direct" if (case, strategy) in DIRECT else "heap")
    assert engine_path(sc, strategy, True) == "heap"


def test_rejected_requests_record_the_time_they_reached_the_task():
    sc = scenario(queue_limit=1, rho=1.2, hop=0.05, jitter=0.02, entry="single:1")
    res = simulate(sc, "round_robin", trace=True, progress=False)
    tr = res.trace
    arr, cl = arrivals(sc)
    task, status, done = tr["task"].to_numpy(), tr["status"].to_numpy(), tr["done"].to_numpy()
    cross = cl.task_node[task] != 1
    d_in = np.where(cross, 0.05 + arr.jitter[0::2], 0.0)
    rej = status == REJECTED
    assert rej.sum() > 50 and (rej & cross).any() and (rej & ~cross).any()
    np.testing.assert_array_equal(done[rej], arr.t[rej] + d_in[rej])
    assert np.isnan(tr["latency"].to_numpy()[rej]).all()


@pytest.mark.parametrize("strategy", ["least_load", "round_robin"])
def test_information_model_changes_decisions(strategy):
    """global, local, stale and piggyback information really differ (for a load-reading
    strategy), and round-robin's choices do not depend on them at all."""
    tasks = {}
    for info in ("global", "local", "stale:1", "stale:3", "piggyback"):
        sc = scenario(info=info, hop=0.05, nodes=4, replicas=6, rho=0.9)
        res = simulate(sc, strategy, trace=True, progress=False)
        tasks[info] = res.trace["task"].to_numpy()
    pairs = [(a, b) for a in tasks for b in tasks if a < b]
    if strategy == "least_load":
        for a, b in pairs:
            assert (tasks[a] != tasks[b]).mean() > 0.05, (a, b)
    else:
        for a, b in pairs:
            np.testing.assert_array_equal(tasks[a], tasks[b])


def test_rr_start_random_offsets_the_balancers():
    """per_node round-robin: random start offsets change the choices, zero offsets make every
    balancer start at the first task (naive agreement for both is covered above)."""
    zero = simulate(scenario(rr_start="zero"), "round_robin", trace=True, progress=False)
    rand = simulate(scenario(rr_start="random"), "round_robin", trace=True, progress=False)
    assert (zero.trace["task"].to_numpy() != rand.trace["task"].to_numpy()).any()
    assert zero.trace["task"][0] == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("chunk", [None, 7])
def test_duration_runs_match_naive(strategy, chunk):
    """Duration-bounded runs (no trace): the measured counters agree with naive.py, whatever
    the chunk size (the warm-up boundary is found by time, chunk by chunk)."""
    sc = scenario(duration=400.0, warmup=0.25, hop=0.02, queue_limit=2, rho=0.95, requests=None)
    res = simulate(sc, strategy, chunk=chunk, progress=False)
    ref = simulate_naive(sc, strategy)
    assert ref.warm_index > 100 and ref.rejected > 0
    assert_counters_match(res.row(), ref)
    np.testing.assert_array_equal(res.tasks["served"].to_numpy(), ref.task_served)


@pytest.mark.parametrize("jitter", [0.2, 0.0], ids=["transit_heap", "transit_ring"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_slot_pool_grows_with_requests_in_flight(strategy, jitter):
    """Overload: more requests in flight (in transit and queued) than the initial slot pool of
    1024, so the pool and both heaps grow mid-run, between small chunks, with live entries
    (without jitter, the requests in transit are a ring: kernel._send)."""
    sc = scenario(rho=2.0, requests=3000, hop=0.5, jitter=jitter, warmup=0.0)
    sc["workload"]["allow_overload"] = True
    res = simulate(sc, strategy, trace=True, chunk=64, progress=False)
    ref = simulate_naive(sc, strategy)
    assert (ref.done > ref.t[-1]).sum() > 1100      # in flight when the last request arrives
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)


def test_the_transit_ring_is_unwound_when_the_pool_grows(monkeypatch):
    """Without jitter the heap path carries the requests crossing the hop in a ring over
    tr_key / tr_slot, wrapping at their end (kernel._send). Here a 60 s hop in overload keeps
    about 300 requests in transit when the slot pool grows, and the ring then runs past its
    end (the test checks that it does): grow_slots must put it back in order, or requests
    reach the wrong tasks at the wrong times. Each request is naive.py's."""
    import lbbench.engine.run as engine_run
    S = engine_run.S
    seen, grow_slots = [], S.grow_slots

    def grow(st, new):
        seen.append(int(st.ctr[S.TR_HEAD]) + int(st.ctr[S.TRANSIT_N]) - len(st.tr_key))
        return grow_slots(st, new)
    monkeypatch.setattr(engine_run.S, "grow_slots", grow)
    sc = scenario(rho=2.0, requests=3000, hop=60.0, warmup=0.0)
    sc["workload"]["allow_overload"] = True
    res = simulate(sc, "least_load", trace=True, chunk=64, progress=False)
    assert seen and seen[0] > 0                     # wrapped: past the end by that many entries
    ref = simulate_naive(sc, "least_load")
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)


def _trace_file(path, n=800, entry=True, seed=3):
    """A CSV trace: continuous arrival times (no ties), demands, and optionally entry nodes."""
    import polars as pl

    rng = np.random.default_rng(seed)
    cols = {"time": np.cumsum(rng.exponential(0.4, n)), "demand": rng.exponential(0.9, n)}
    if entry:
        cols["entry"] = rng.integers(0, 3, n)
    pl.DataFrame(cols).write_csv(path)
    return str(path)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("entry_column", [True, False], ids=["trace_entries", "single_entry"])
def test_trace_workload_matches_naive(tmp_path, entry_column, strategy, path):
    """Arrivals from a trace file. With workload.entry = single:0 but an entry column in the
    trace, requests come in at every node: a request crossing the hop may be overtaken at its
    task, so the direct path must hold it in its transit ring (Config.d_ring), and does: the
    results are naive.py's either way."""
    f = _trace_file(tmp_path / "arrivals.csv", entry=entry_column)
    sc = scenario(entry="single:0", hop=0.3, replicas=3, workers=2, warmup=0.2, requests=None)
    sc["workload"] = {"trace": f, "entry": "single:0"}
    expected = "direct" if (strategy != "least_load" and path == "auto") else "heap"
    assert engine_path(sc, strategy, PATHS[path]) == expected
    if expected == "direct":
        from lbbench.engine.run import _Run
        from lbbench.model.scenario import load_scenario
        from lbbench.strategy import resolve
        s = load_scenario(sc)
        assert _Run(s, resolve(strategy), {}, s.run.seed, False, False).config().d_ring == entry_column
    res = simulate(sc, strategy, trace=True, force_heap=PATHS[path], progress=False)
    ref = simulate_naive(sc, strategy)
    assert ref.requests == 800 and res.row()["requests"] == 800
    assert_trace_matches(res.trace, ref)
    assert_counters_match(res.row(), ref)
    assert res.row()["cross_node_frac"] > 0


def test_naive_view_has_the_engines_fields():
    """naive.py defines the strategy's View itself, with the engine's fields in the engine's
    order, and loads nothing from lbbench.engine (it is a reference, not a second caller)."""
    import subprocess
    import sys
    from pathlib import Path

    import naive
    from lbbench.engine import View

    assert naive.View._fields == View._fields
    code = "import sys, naive; print(sorted(m for m in sys.modules if m.startswith('lbbench.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(naive.__file__).parent, capture_output=True,
                         text=True, check=True).stdout
    assert "lbbench.model.inputs" in out and "lbbench.engine" not in out


@pytest.mark.parametrize("strategy", ["round_robin", "random"])
def test_direct_transit_ring_across_chunks_and_pool_growth(strategy):
    """The direct path's transit ring (a hop, several entry nodes) holds requests across kernel
    calls and grows with the slot pool: a 20 s hop at 80 requests/s, 4 in 5 of them crossing,
    keeps about 1,300 requests in transit (the pool starts at 1,024 slots) through 100-request
    chunks. Every request
    completes when the heap path has it complete, on the same task, and the run is direct."""
    sc = scenario(nodes=5, replicas=100, rho=0.8, hop=20.0, requests=8000)
    sc["run"]["chunk"] = 100
    assert engine_path(sc, strategy, False) == "direct"
    direct = simulate(sc, strategy, trace=True, progress=False)
    heap = simulate(sc, strategy, trace=True, progress=False, force_heap=True)
    for col in ("task", "status", "start", "done", "latency"):
        np.testing.assert_array_equal(direct.trace[col].to_numpy(), heap.trace[col].to_numpy(), err_msg=col)
    a, b = direct.row(), heap.row()
    assert (a["completed"], a["cross_node_frac"], a["in_flight"]) == (b["completed"], b["cross_node_frac"], 0)
    assert a["latency_mean"] == pytest.approx(b["latency_mean"], rel=1e-12)
    assert a["latency_mean"] > 40.0 * a["cross_node_frac"]     # the hop both ways: the ring held them

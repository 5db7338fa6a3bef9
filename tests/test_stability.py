"""Runs whose queues grow without bound are flagged `stable = false`, and only those."""
from __future__ import annotations

import numpy as np
import pytest

from lbbench.results.report import write_report
from lbbench.engine.run import simulate
from lbbench.engine.stability import BATCHES, judge, rising_latency
from lbbench.experiments.sweep import load_sweep, run_sweep

HALF_SPEED = {"cluster.speeds": [1.0, 1.0, 0.5], "run.requests": 60_000}


def test_round_robin_on_a_half_speed_node_is_unstable_and_least_load_is_not():
    # rho 0.7 of 1.5 units of capacity split evenly: the half-speed task is offered 1.05
    rr = simulate("seed-mesh", "round_robin", seed=1, overrides=HALF_SPEED, progress=False)
    ll = simulate("seed-mesh", "least_load", seed=1, overrides=HALF_SPEED, progress=False)
    assert rr.row()["stable"] is False
    assert "task 1 was offered 1.0" in rr.extra["unstable"]
    assert ll.row()["stable"] is True and "unstable" not in ll.extra


def test_below_capacity_the_same_mesh_is_stable():
    # rho 0.6: the half-speed task is offered 0.9
    r = simulate("seed-mesh", "round_robin", seed=1, overrides={**HALF_SPEED, "workload.rho": 0.6}, progress=False)
    assert r.row()["stable"] is True


def test_no_false_alarm_near_capacity():
    # M/M/1 at rho 0.95 is stable; with Z = 4 standard errors and a rank test at about 0.3%,
    # twelve seeds should all pass (the chance of one false alarm is below 5%)
    sc = {"services": [{"replicas": 1}], "workload": {"rho": 0.95}, "run": {"requests": 60_000}}
    flagged = [s for s in range(12) if not simulate(sc, "round_robin", seed=s, progress=False).row()["stable"]]
    assert flagged == []


def test_overload_just_above_capacity_is_flagged():
    sc = {"services": [{"replicas": 1}], "workload": {"rho": 1.05, "allow_overload": True}, "run": {"requests": 60_000}}
    for seed in range(3):
        assert simulate(sc, "round_robin", seed=seed, progress=False).row()["stable"] is False


def test_a_bounded_queue_under_overload_is_stable():
    sc = {"services": [{"replicas": 1, "queue_limit": 5}], "workload": {"rho": 1.5}, "run": {"requests": 30_000}}
    r = simulate(sc, "round_robin", seed=0, progress=False)
    assert r.row()["rejected"] > 0 and r.row()["stable"] is True


def test_a_failure_and_its_recovery_are_not_instability():
    r = simulate("failover", "round_robin", seed=1, progress=False)
    assert r.row()["failed"] > 0 and r.row()["stable"] is True


def test_rising_latency_alone_is_caught_and_noise_is_not():
    rng = np.random.default_rng(7)
    n = 100
    completed = np.full(n, 50.0)
    growing = (1.0 + np.linspace(0, 5, n)) * rng.lognormal(0, 0.2, n) * completed
    assert rising_latency(growing, completed) is not None
    assert judge([0.5], [1000], [1.0], growing, completed)[0] is False
    # a transient: a spike in the middle that comes back down
    spike = np.ones(n) * completed
    spike[40:60] *= 20
    assert rising_latency(spike, completed) is None
    # independent noise: the rank test passes by chance with probability ~0.3%; of 1000 series
    # no more than 15 may be flagged (binomial upper tail, far beyond 5 standard deviations)
    alarms = sum(rising_latency(rng.lognormal(0, 1.0, n) * completed, completed) is not None for _ in range(1000))
    assert alarms <= 15
    # too few windows to judge
    assert rising_latency(growing[:BATCHES - 1], completed[:BATCHES - 1]) is None


def test_overload_test_needs_evidence():
    # offered 1.02 with few requests and a heavy tail: not enough evidence
    assert judge([1.02], [100], [20.0])[0] is True
    assert judge([1.02], [1_000_000], [1.0])[0] is False
    assert judge([np.nan], [0], [1.0])[0] is True


@pytest.fixture(scope="module")
def unstable_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("unstable")
    sw = load_sweep({"name": "halfspeed", "scenario": "seed-mesh", "seeds": [1, 2],
                     "set": HALF_SPEED, "axes": {"strategy": ["round_robin", "least_load"],
                                                 "workload.rho": [0.5, 0.8]}})
    run_sweep(sw, out, workers=1, progress=False)
    return out


def test_the_report_does_not_present_an_unstable_mean(unstable_sweep):
    md, _ = write_report(unstable_sweep)
    text = md.read_text()
    assert "runs never reached a steady state" in text
    rows = [line for line in text.splitlines() if line.startswith("| round_robin | 0.8 |")]
    assert rows and all("unstable" in r for r in rows)
    assert any(line.startswith("| least_load | 0.8 |") and "round_robin unstable" in line for line in text.splitlines())
    assert any(line.startswith("| least_load | 0.8 | 2 |") and "unstable" not in line for line in text.splitlines())

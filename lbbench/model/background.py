"""The background load of the nodes over a run (scenario `cluster.background`; docs/model.md,
"Nodes as shared machines"), computed in Python before the run.

Each node's background is its latest step's load (0 before any) plus the load of every random
batch work covering it while that work is on. Random work alternates on and off periods,
exponential of means `mean_on` and `mean_off`, drawn per entry and node from the BACKGROUND
stream of the seed: the first a uniform (on with probability mean_on / (mean_on + mean_off),
the stationary distribution, as workload.bursts), then the periods' lengths in order, up to the
run's horizon (after it, the last state holds). The result is one time-sorted list of changes,
each a node's new total background, which the engine applies as a control event
(`engine.cpu.ps_background`) and tests/naive.py as its own events.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import rng as rngmod


@dataclass
class BackgroundSchedule:
    time: np.ndarray     # float64[B], sorted
    node: np.ndarray     # int64[B]
    level: np.ndarray    # float64[B]: the node's background from `time` on

    def __len__(self) -> int:
        return len(self.time)


def build_background(sc, horizon: float, seed: int) -> BackgroundSchedule:
    """Every change of a node's background: steps in their listed order, then random work's
    switches, sorted by time (stable); at equal times a node's changes apply in that order."""
    changes = []        # (time, node, entry, load or None for a step, on)
    for j, bg in enumerate(sc.cluster.background):
        if not bg.random:
            changes.append((bg.at, bg.node, j, True))
            continue
        p_on = bg.mean_on / (bg.mean_on + bg.mean_off)
        xs = list(bg.nodes) if bg.nodes is not None else range(sc.cluster.nodes)
        for x, g in zip(xs, rngmod.streams(seed, [(rngmod.BACKGROUND, j, x) for x in xs])):
            on = bool(g.random() < p_on)
            t = 0.0
            while t <= horizon:
                changes.append((t, x, j, on))
                t += g.exponential(bg.mean_on if on else bg.mean_off)
                on = not on
    order = sorted(range(len(changes)), key=lambda i: changes[i][0])     # stable
    step = np.zeros(sc.cluster.nodes)
    on_at = {}              # node -> {random entry: on}
    time, node, level = [], [], []
    for i in order:
        t, x, j, on = changes[i]
        bg = sc.cluster.background[j]
        if bg.random:
            on_at.setdefault(x, {})[j] = on
        else:
            step[x] = bg.load
        total = step[x] + sum(sc.cluster.background[jj].load for jj, o in on_at.get(x, {}).items() if o)
        time.append(t)
        node.append(x)
        level.append(total)
    return BackgroundSchedule(np.asarray(time, dtype=np.float64), np.asarray(node, dtype=np.int64),
                              np.asarray(level, dtype=np.float64))

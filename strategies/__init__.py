"""lbbench's built-in strategies, registered through the `lbbench.strategies` entry point like
any installed plugin package's. Each module holds one `STRATEGY` spec.

Reference strategies: round_robin (Swarm's IPVS), least_load, random. Research strategies:
weighted_round_robin, power_of_d, join_idle_queue, shortest_expected_delay, never_queue,
peak_ewma, ring_hash, maglev, bounded_hash, prequal, least_node_load, sita, least_work_left (each
module's docstring cites its origin).
"""
from . import (bounded_hash, join_idle_queue, least_load, least_node_load, least_work_left, maglev, never_queue,
               peak_ewma, power_of_d, prequal, random, ring_hash, round_robin, shortest_expected_delay, sita,
               weighted_round_robin)

BUILTINS = [
    round_robin.STRATEGY, least_load.STRATEGY, random.STRATEGY,
    weighted_round_robin.STRATEGY, power_of_d.STRATEGY, join_idle_queue.STRATEGY,
    shortest_expected_delay.STRATEGY, never_queue.STRATEGY, peak_ewma.STRATEGY,
    ring_hash.STRATEGY, maglev.STRATEGY, prequal.STRATEGY, bounded_hash.STRATEGY, least_node_load.STRATEGY,
    sita.STRATEGY, least_work_left.STRATEGY,
]

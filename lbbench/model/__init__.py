"""What is simulated (docs/model.md): the scenario and its presets, the cluster it builds, the
workload's arrivals, the fault schedule and the engine's limits. Plain Python and numpy; it
imports nothing from the rest of lbbench but `errors` and `rng` (docs/architecture.md)."""

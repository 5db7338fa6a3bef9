"""lbbench: a research framework for load-balancing algorithms on a simulated ingress mesh.

    import lbbench
    sc = lbbench.load_scenario("seed-mesh", {"workload.rho": 0.9})
    res = lbbench.simulate(sc, strategy="least_load", seed=1)
    res.summary        # one-row polars DataFrame
"""
__version__ = "0.1.0"
SCHEMA_VERSION = 1

from .errors import StrategyError, UserError  # noqa: E402

# The rest is imported on first use (PEP 562): numba, polars and pydantic take about a second
# to import, which `lbbench --help`, `lbbench presets` or a sweep parent starting its workers
# need not wait for.
_LAZY = {
    "Scenario": "model.scenario", "load_scenario": "model.scenario",
    "Param": "plugins.strategy", "Strategy": "plugins.strategy",
    "simulate": "engine.run",
    "check_strategy": "experiments.checker",
}


def __getattr__(name):
    if name == "analysis":      # `import lbbench; lbbench.analysis.load(...)`
        import importlib
        return importlib.import_module(".analysis", __name__)
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'lbbench' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["Param", "Scenario", "Strategy", "StrategyError", "UserError", "check_strategy", "load_scenario", "simulate",
           "__version__"]

"""lbbench: a research framework for load-balancing algorithms on a simulated ingress mesh.

    import lbbench
    sc = lbbench.load_scenario("seed-mesh", {"workload.rho": 0.9})
    res = lbbench.simulate(sc, strategy="least_load", seed=1)
    res.summary        # one-row polars DataFrame
"""
__version__ = "0.1.0"
SCHEMA_VERSION = 1

from .errors import StrategyError, UserError  # noqa: E402
from .scenario import Scenario, load_scenario  # noqa: E402
from .strategy import Param, Strategy  # noqa: E402


# Imported eagerly: the function must shadow its module's name on the package (a lazy
# wrapper would be replaced by the submodule as soon as anyone imports lbbench.simulate).
from .simulate import simulate  # noqa: E402

__all__ = ["Param", "Scenario", "Strategy", "StrategyError", "UserError", "load_scenario", "simulate", "__version__"]

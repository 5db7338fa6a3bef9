"""The simulation engine (docs/architecture.md): the run state, the compiled dispatch loop and
its control events, the specialisation per strategy, and `run.simulate`, which drives it chunk
by chunk and builds the result. Imports the model and the plugin API, nothing above them."""


def __getattr__(name):
    # `lbbench.engine.View` (the strategy's view of a decision, as docs/strategies.md names it),
    # imported on first use: the engine's modules load numba, which `schema` and `identity` do not need
    if name == "View":
        from .kernel import View
        return View
    raise AttributeError(f"module 'lbbench.engine' has no attribute {name!r}")

"""`lbbench.analysis`, as notebooks import it: the same module as `lbbench.results.analysis`."""
import sys

from .results import analysis as _analysis

sys.modules[__name__] = _analysis

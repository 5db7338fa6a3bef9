"""`lbbench.strategy`, as plugins import it (`from lbbench.strategy import Strategy, Param`): the
same module as `lbbench.plugins.strategy`."""
import sys

from .plugins import strategy as _strategy

sys.modules[__name__] = _strategy

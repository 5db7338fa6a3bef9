"""lbbench's built-in strategies, registered through the `lbbench.strategies` entry point like
any installed plugin package's. Each module holds one `STRATEGY` spec."""
from . import least_load, random, round_robin

BUILTINS = [round_robin.STRATEGY, least_load.STRATEGY, random.STRATEGY]

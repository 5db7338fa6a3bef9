"""Errors lbbench reports to its users.

`UserError` is bad input (a scenario field, an override, a path, a strategy name): the CLI
prints its one-line message and exits with code 2, never a traceback. `StrategyError` is a
plugin that broke its contract during a run; it names the plugin, the request and the value.
"""


class UserError(Exception):
    """Bad input. The message is one line naming the field and the fix."""


class StrategyError(RuntimeError):
    """A strategy plugin broke its contract (e.g. returned a task outside its candidates)."""


class NotATaskId(TypeError):
    """A strategy whose select returns no integer (raised while its kernel compiles)."""

"""Errors lbbench reports to its users.

`UserError` is bad input (a scenario field, an override, a path, a strategy name): the CLI
prints its one-line message and exits with code 2, never a traceback. `PluginError` is a
`UserError` about a strategy spec's declaration, raised when the spec is built or registered
(docs/strategies.md, "Going further"). `StrategyError` is a plugin that broke its
contract during a run; it names the plugin, the request and the value, and carries them as
fields.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input. The message is one line naming the field and the fix."""


class PluginError(UserError):
    """A strategy spec whose declaration is wrong (as pluggy's PluginValidationError: the error
    names the plugin). Fields: `plugin` (the spec's name), `field` (the spec field of the first
    fault: name, version, state_size, task_state, params, select, on_complete), `faults` (every
    fault, as (field, sentence) pairs). The message is one line: the plugin and its faults."""

    def __init__(self, plugin, faults: list[tuple[str, str]]):
        self.plugin = plugin
        self.faults = list(faults)
        self.field = self.faults[0][0] if self.faults else ""
        super().__init__(f"strategy {plugin!r}: " + "; ".join(text for _, text in self.faults))

    def __reduce__(self):
        return (type(self), (self.plugin, self.faults))


class StrategyError(RuntimeError):
    """A strategy plugin broke its contract during a run. Fields: `strategy` (its name),
    `kind` ("not_a_candidate": select returned `value` for request `request`, which is not one
    of its candidates; "raised": the plugin raised, `value` is the exception; "compile": numba
    could not compile it, `value` is the one-line reason), `request` (the request's index, or
    None), `value`."""

    def __init__(self, message: str, *, strategy: str | None = None, kind: str | None = None,
                 request: int | None = None, value=None):
        super().__init__(message)
        self.strategy, self.kind, self.request, self.value = strategy, kind, request, value

    def __reduce__(self):
        return (_strategy_error, (str(self), self.strategy, self.kind, self.request,
                                  self.value if not isinstance(self.value, BaseException) else repr(self.value)))


def _strategy_error(message, strategy, kind, request, value):
    return StrategyError(message, strategy=strategy, kind=kind, request=request, value=value)


class NotATaskId(TypeError):
    """A strategy whose select returns no integer (raised while its kernel compiles)."""

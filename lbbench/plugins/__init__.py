"""The strategy plugin API (`strategy`: Strategy, Param, the registry) and the helper kit
strategies share. Users import it as `lbbench.strategy` (docs/strategies.md)."""

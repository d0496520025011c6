"""The user-error types: what mensa raises for a user's mistake.

A :class:`UserError`'s message is one line naming what is wrong and what is allowed;
the CLI prints it and exits with status 2. Every such error type derives from it, one
per kind of mistake: :class:`~mensa.core.config.ConfigError` (a config),
:class:`~mensa.core.ir.LayerError` (a layer or model), :class:`CompileError` (a layer an
accelerator cannot run).
"""

__all__ = ["UserError", "CompileError"]


class UserError(ValueError):
    """A user's mistake (config, model file, layer, CLI argument)."""


class CompileError(UserError):
    """A layer an accelerator's compiler refuses. One line: the layer, why, and what is allowed."""

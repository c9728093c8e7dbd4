"""Errors a user can cause; the CLI turns them into one clear line and exit code 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (bad config, unknown run, bad target)."""

    exit_code = 2


class ConfigError(UserError):
    """A curriculum config that cannot be used, located by file, line and field path."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.message, self.file, self.line, self.field = message, file, line, field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.file or "<config>"
        if self.line:
            where += f":{self.line}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class ConfigErrors(ConfigError):
    """Several config errors at once, so the user can fix them in one pass."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, first.file, first.line, first.field)

    def describe(self) -> str:
        return "\n".join(e.describe() for e in self.errors)


class SpecError(UserError):
    """A stage spec (spec.json, data, reward names) a worker cannot run; the worker exits 2."""

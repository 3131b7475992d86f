"""The one error family the CLI catches. Every message says what failed, where, and what to do next."""

from __future__ import annotations


class DatathonError(Exception):
    """Base of every error datathon reports to a person (no traceback on the terminal)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  -> {self.hint}"


class ConfigError(DatathonError):
    """The event file is missing, unreadable or invalid. `problems` lists every one found."""

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message, *(f"  {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  -> {self.hint}")
        return "\n".join(lines)


class ProvisionError(DatathonError):
    """Creating or changing a resource failed."""


class PreflightError(ProvisionError):
    """This machine would stop the event before it starts (a port held by another program); `problems` lists
    every one found. Raised before anything changes."""

    def __init__(self, message: str, *, problems: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems

    def __str__(self) -> str:
        lines = [self.message, *(f"  {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  -> {self.hint}")
        return "\n".join(lines)


class StateError(DatathonError):
    """The state folder is unreadable, locked or does not match the event file."""


class Aborted(DatathonError):
    """The user declined a confirmation; nothing was changed."""

    exit_code = 1

"""Errors that name where bad input came from, so a user can fix it without a debugger."""

from __future__ import annotations


class TokenfilterError(Exception):
    """Base class for errors raised on purpose by tokenfilter."""


class ConfigError(TokenfilterError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""


class InputError(TokenfilterError):
    """A record of an input file is unusable; the message names the file and line (or row)."""

    def __init__(self, path: str, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

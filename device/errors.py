"""Errors a user can act on.

A ``UserError`` becomes one line on stderr and exit code 2 (no traceback): it names what
is wrong, where (file, key, column), and the fix.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with input, configuration or environment that the user can fix."""

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.what}; fix: {self.fix}" if self.fix else self.what

"""What a command handler gets: its arguments, its flags and the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ..store import Store
    from .commands.table import Command
    from .flags import FlagValues

__all__ = ["Context"]

T = TypeVar("T")


class Context:
    """One run of one command.

    Attributes:
        command: The command's table entry.
        name: The name it was called by (an alias, maybe).
        args: The positional arguments.
        values: Every flag's value, global ones included, by ``dest``.
    """

    def __init__(
        self,
        command: Command,
        name: str,
        args: list[str],
        values: FlagValues,
        store: Store | None = None,
    ) -> None:
        self.command = command
        self.name = name
        self.args = args
        self.values = values
        self._store = store

    @property
    def store(self) -> Store:
        """The store (commands that declare ``needs_store``)."""
        assert self._store is not None, f"{self.name} runs without a store"
        return self._store

    def flag(self, dest: str) -> bool:
        """A boolean flag's value."""
        return self.values.get(dest) is True

    def optbool(self, dest: str) -> bool | None:
        """An ``optbool`` flag's value: None when it was not given."""
        value = self.values.get(dest)
        return value if isinstance(value, bool) else None

    def text(self, dest: str) -> str:
        """A string flag's value ("" when not given)."""
        value = self.values.get(dest, "")
        return value if isinstance(value, str) else ""

    def items(self, dest: str) -> list[str]:
        """A repeatable flag's values, in order."""
        value = self.values.get(dest)
        return list(value) if isinstance(value, list) else []

    @property
    def json(self) -> bool:
        """Whether ``--json``/``-j`` was given."""
        return self.flag("json")

    def lookup_args(self, lookup: Callable[[str], T]) -> list[T]:
        """What ``lookup`` finds for each argument, in order; arguments it raises
        ``LookupError`` for are left out (the caller compares the counts)."""
        out = []
        for arg in self.args:
            try:
                out.append(lookup(arg))
            except LookupError:
                pass
        return out

    def metadata(self) -> str | None:
        """``--metadata``, or the contents of ``--metadata-file`` (None after reporting an
        unreadable file)."""
        path = self.text("metadata_file")
        if not path:
            return self.text("metadata")
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "surrogateescape")
        except OSError as e:
            from .output import os_error_text, stderr

            stderr(os_error_text(e, "read" if isinstance(e, IsADirectoryError) else "open"))
            return None

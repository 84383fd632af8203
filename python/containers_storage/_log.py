"""Debug events on :mod:`logging`: the ``containers_storage`` logger and its children.

The package is silent by default (a :class:`logging.NullHandler` on ``containers_storage``);
a program that configures logging gets the events, and the CLI's ``--debug`` prints them on
stderr as Go's logrus does. :mod:`logging` costs about 5 ms to import, two thirds of the
package's own import, so nothing here imports it: while no one has imported it, no one can
have configured a handler, and an event has nowhere to go.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["ROOT", "debug", "silence"]

#: The package logger; events come from children named after the module
#: (``containers_storage.cli``).
ROOT = "containers_storage"


def silence(logging: Any) -> None:
    """Give the package logger its :class:`~logging.NullHandler` (once)."""
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())


def debug(name: str, message: str, *args: object) -> None:
    """Log ``message % args`` at DEBUG on logger ``name`` (a child of ``containers_storage``)
    when :mod:`logging` is loaded and that level is enabled."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    silence(logging)
    logger = logging.getLogger(name)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(message, *args, stacklevel=2)

"""``containers-storage``: the entry point, a drop-in for the Go 1.43 CLI.

The flow is Go's ``main.go``: global flags (mflag rules, see :mod:`.flags`), then the
command and its flags (the global ones again, so they may follow the command), argument
counts, the store, the command. Exit codes: 0, 1 for failures, 125 for a bad command flag.
When no global store flag is given, the store is podman's (storage.conf, then
``$STORAGE_DRIVER``/``$STORAGE_OPTS``), as in Go.

Only this module, the flag parser and the command table load at start-up; ``--help``,
``--version`` and argument errors never import the store.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from .._strconv import go_quote
from .commands.table import GLOBAL_FLAGS, TOP_FLAGS, Command, find
from .flags import FlagError, FlagSet, FlagValues, HelpRequested, go_list

if TYPE_CHECKING:
    from ..options import StoreOptions
    from ..store import Store
    from .context import Context

__all__ = ["main"]

PROG = "containers-storage"

#: The logger of the CLI's debug events (``--debug`` prints them on stderr).
LOGGER = "containers_storage.cli"


def _argv0() -> str:
    arg = sys.argv[0] if sys.argv and sys.argv[0] else PROG
    return PROG if arg.endswith("__main__.py") or arg in ("-c", "-m") else arg


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Run as the command (no ``argv``), the process ends here with ``os._exit`` once the
    output is flushed: tearing the interpreter down (clearing every module, collecting
    garbage) took about 12 ms, more than a Go command's whole run. Nothing is lost by
    skipping it: commands finish their work and close their stores before they return, and
    the kernel releases the lock files' record locks with the process.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    global _AS_COMMAND
    _AS_COMMAND = argv is None
    if argv is None:
        # As the Go binary: Ctrl-C ends the process at once, even while it waits for a
        # lock in native code (where Python's KeyboardInterrupt would not be raised).
        # (_signal, not signal: the latter builds its enums, 1 ms of start-up.)
        import _signal  # type: ignore[import-not-found]

        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    code = _run_main(args)
    if argv is None:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            code = 141
        except (OSError, ValueError):
            pass
        os._exit(code)
    return code


def _run_main(args: list[str]) -> int:
    try:
        code = _main(args, _argv0())
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Go does on SIGPIPE.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except KeyboardInterrupt:
        return 130


def _usage() -> ModuleType:
    """The usage texts, imported only when one is printed."""
    from . import usage

    return usage


def _main(args: list[str], argv0: str) -> int:
    values: FlagValues = {}
    top_specs = GLOBAL_FLAGS + TOP_FLAGS
    top = FlagSet(PROG, top_specs, values, argv0)
    if not args:
        _usage().main_usage(top_specs, top.defaults, sys.stdout, sys.stderr)
        return 1
    try:
        rest = top.parse(args)
    except HelpRequested:
        _usage().main_help(top_specs, top.defaults, sys.stdout)
        return 0
    except FlagError as e:
        print(f"{e} while parsing arguments (1)")
        _usage().main_usage(top_specs, top.defaults, sys.stdout, sys.stderr)
        return 1
    if values["help"]:
        _usage().main_help(top_specs, top.defaults, sys.stdout)
        return 0
    if values["version"]:
        from .. import __version__

        print(f"{PROG} {__version__}")
        return 0
    # Go loads podman's options when no global store flag precedes the command; the
    # command's own global flags then override them. Loading them is left until the command
    # runs, so that --help and argument errors stay cheap.
    use_defaults = not any(values[k] for k in _STORE_FLAGS)
    if not rest:
        _usage().main_usage(top_specs, top.defaults, sys.stdout, sys.stderr)
        return 1
    name = rest[0]
    cmd = find(name)
    if cmd is None:
        print(f"{name}: unrecognized command.")
        return 1
    specs = GLOBAL_FLAGS + cmd.flags
    sub = FlagSet(name, specs, values, argv0)
    try:
        cargs = sub.parse(rest[1:])
    except HelpRequested:
        _usage().command_help(cmd, name, specs, sub.defaults, sys.stdout)
        return 0
    except FlagError:
        return 125
    if cmd.min_args and len(cargs) < cmd.min_args:
        print(f"{name}: more arguments required.")
        _usage().command_usage(cmd, name, specs, sub.defaults, sys.stdout, sys.stderr)
        return 1
    if cmd.max_args and len(cargs) > cmd.max_args:
        print(f"{name}: too many arguments ({go_list(cargs)}).")
        _usage().command_usage(cmd, name, specs, sub.defaults, sys.stdout, sys.stderr)
        return 1
    if cmd.needs_store and _AS_COMMAND:
        from ..unshare import maybe_reexec

        maybe_reexec()  # a rootless user's store lives in their user namespace
    defaults = _default_options(values) if use_defaults and cmd.needs_store else None
    return _run(cmd, name, cargs, values, defaults)


_STORE_FLAGS = ("graph", "run", "storage_driver", "storage_opt")
#: Whether this is the process's command line (which may re-execute itself in the
#: rootless user namespace), not a call of :func:`main` with arguments.
_AS_COMMAND = False


def _default_options(values: FlagValues) -> StoreOptions:
    """podman's store options (Go's ``DefaultStoreOptionsAutoDetectUID``) under the global
    flags the command was given."""
    import warnings

    from ..options import StoreOptions

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opts = StoreOptions.default()
    except Exception:  # Go ignores the error and carries on with empty options
        opts = StoreOptions()
    values["graph"] = values["graph"] or opts.graph_root
    values["run"] = values["run"] or opts.run_root
    values["storage_driver"] = values["storage_driver"] or opts.graph_driver_name
    values["storage_opt"] = [*opts.graph_driver_options, *_items(values, "storage_opt")]
    return opts


def _debug_to_stderr() -> Callable[[], None]:
    """Print the package's log records on stderr as Go's logrus does (``--debug``); returns
    what undoes it."""
    import logging
    from datetime import datetime

    from .._log import ROOT, silence

    class Logrus(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            now = datetime.fromtimestamp(record.created).astimezone()
            level = _LOGRUS_LEVELS.get(record.levelname, record.levelname.lower())
            return (
                f'time="{now.isoformat(timespec="seconds")}" level={level} '
                f"msg={go_quote(record.getMessage())}"
            )

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Logrus())
    logger = logging.getLogger(ROOT)
    silence(logging)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return undo


_LOGRUS_LEVELS = {"WARNING": "warning", "CRITICAL": "fatal"}


def _handler(cmd: Command) -> Callable[[Context], int]:
    module, func = cmd.handler.split(":")
    loaded = importlib.import_module(f"{__package__}.commands.{module}")
    handler: Callable[[Context], int] = getattr(loaded, func)
    return handler


def _items(values: FlagValues, key: str) -> list[str]:
    value = values[key]
    return [str(v) for v in value] if isinstance(value, list) else []


def _run(
    cmd: Command,
    name: str,
    args: list[str],
    values: FlagValues,
    defaults: StoreOptions | None,
) -> int:
    import warnings

    from .._log import debug as log
    from .context import Context

    debug = values["debug"] is True
    undo_debug = _debug_to_stderr() if debug else None
    log(LOGGER, "Root: %s", values["graph"])
    log(LOGGER, "Run Root: %s", values["run"])
    log(LOGGER, "Driver Name: %s", values["storage_driver"])
    log(LOGGER, "Driver Options: %s", go_list(_items(values, "storage_opt")))
    watch = None
    with warnings.catch_warnings():
        # Go's logrus prints warnings only with --debug.
        warnings.simplefilter("default" if debug else "ignore")
        try:
            store = None
            if cmd.needs_store:
                from .lockwatch import LockWatch

                watch = LockWatch(_lock_roots(values)).start()
                store = _open_store(values, defaults)
                if store is None:
                    return 1
            return _handler(cmd)(Context(cmd, name, args, values, store))
        except (BrokenPipeError, KeyboardInterrupt):
            raise
        except Exception as e:
            return _failed(e, debug)
        finally:
            if watch is not None:
                watch.stop()
            if undo_debug is not None:
                undo_debug()


def _lock_roots(values: FlagValues) -> list[str]:
    """Where the store's lock files are: the roots and the additional image stores."""
    roots = [str(values["graph"]), str(values["run"])]
    for opt in _items(values, "storage_opt"):
        key, _, path = opt.partition("=")
        if key.endswith(".imagestore") and path:
            roots.append(path)
    return [os.path.abspath(r) for r in roots if r]


def _open_store(values: FlagValues, defaults: StoreOptions | None) -> Store | None:
    """The store the global flags name, or None after printing Go's ``error initializing``."""
    from ..options import StoreOptions
    from .output import error_text

    opts = defaults if defaults is not None else StoreOptions()
    opts.graph_root = str(values["graph"])
    opts.run_root = str(values["run"])
    opts.graph_driver_name = str(values["storage_driver"])
    opts.graph_driver_options = _items(values, "storage_opt")
    try:
        from ..store import get_store

        return get_store(opts)
    except Exception as e:
        print(f"error initializing: {error_text(e)}")
        return None


def _failed(e: Exception, debug: bool) -> int:
    """Report an error the command did not handle: one line, Go's text where there is one."""
    from ..errors import StorageError
    from .output import error_text, stderr

    if isinstance(e, StorageError | OSError | ValueError | LookupError):
        stderr(error_text(e))
    else:
        stderr(f"{PROG}: internal error: {type(e).__name__}: {error_text(e)}")
    if debug:
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    return 1

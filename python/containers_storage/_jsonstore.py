"""The bookkeeping files: compact JSON as Go writes it, atomic saves, Go timestamps.

containers/storage 1.43 marshals with json-iterator in standard-library mode: no spaces,
struct field order, map keys sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, no
trailing newline. Files are replaced atomically: a temporary file in the same directory,
``fdatasync``, ``rename``, then ``fsync`` of the directory, so a crash leaves the old file or
the new one, never a torn one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, cast

from .errors import LoadError

__all__ = [
    "atomic_write",
    "dumps",
    "dumps_text",
    "format_time",
    "load_array",
    "loads",
    "now",
    "parse_time",
]

_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)

ZERO_TIME = "0001-01-01T00:00:00Z"


def _codec() -> tuple[Callable[[str], Any], Callable[[Any, bool], str]]:
    """JSON decoding and compact encoding straight from CPython's ``_json`` accelerator.

    These are the functions ``json.loads`` and ``json.dumps`` end up calling; the ``json``
    package around them compiles its regular expressions on import, about 2 ms of every
    ``containers-storage`` command. Without ``_json`` (another interpreter), the package.
    """
    try:
        import _json

        class _Context:
            # The attributes the C scanner reads from a json.JSONDecoder.
            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int

            @staticmethod
            def parse_constant(name: str) -> Any:
                raise ValueError(f"{name} is not valid JSON")

        scan_once = _json.make_scanner(cast(Any, _Context()))
        encode_str = _json.encode_basestring

        def default(o: Any) -> Any:
            raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")

        # One circular-reference memo, shared by both encoders and every call (json.dumps
        # makes a fresh one per call): a call that succeeds leaves it empty again, one that
        # fails part way leaves its entries behind, so dumps() clears it then.
        memo: dict[int, Any] = {}
        encoders = {
            flag: _json.make_encoder(memo, default, encode_str, None, ":", ",", flag, False, False)
            for flag in (False, True)
        }
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - CPython has _json
        import json

        def fallback_dumps(obj: Any, sort_keys: bool) -> str:
            return json.dumps(
                obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=sort_keys
            )

        return json.loads, fallback_dumps

    whitespace = " \t\n\r"

    def loads(text: str) -> Any:
        start = len(text) - len(text.lstrip(whitespace))
        try:
            value, end = scan_once(text, start)
        except StopIteration as e:
            raise ValueError(f"Expecting value: char {e.value}") from None
        if text[end:].strip(whitespace):
            raise ValueError(f"Extra data: char {end}")
        return value

    def dumps(obj: Any, sort_keys: bool) -> str:
        try:
            return "".join(encoders[sort_keys](obj, 0))
        except BaseException:
            memo.clear()
            raise

    return loads, dumps


_loads, _dumps = _codec()


def loads(data: bytes | str) -> Any:
    """Decode JSON text (bytes are UTF-8), as ``json.loads``.

    Raises:
        ValueError: The text is not JSON (or not UTF-8).
    """
    text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
    return _loads(text)


def dumps_text(obj: Any, *, sort_keys: bool = False) -> str:
    """``obj`` as Go's ``encoding/json`` writes it (compact, HTML-escaped, no newline)."""
    text = _dumps(obj, sort_keys)
    for raw, escaped in _ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as Go's ``json.Marshal`` does (compact, HTML-escaped), as bytes."""
    return dumps_text(obj).encode("utf-8", "surrogateescape")


def load_array(path: str) -> tuple[list[dict[str, Any]], os.stat_result | None]:
    """Read a JSON array of objects; a missing, empty or ``null`` file is an empty list.

    Returns the records and the file's stat (None when missing).

    Raises:
        LoadError: The file is not valid JSON or not an array of objects (Go would have
            silently read it as empty or partial; we refuse to lose track of layers).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return [], None
    try:
        st = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, max(st.st_size, 1 << 16)):
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not data.strip():
        return [], st
    try:
        value = loads(data)
    except ValueError as e:
        raise LoadError(f"{LoadError.go_message}: parsing {path}: {e}") from e
    if value is None:
        return [], st
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise LoadError(f"{LoadError.go_message}: {path}: not an array of objects")
    return value, st


#: This process's PID and a count of its temporary files: unique names without a
#: ``getpid`` and a ``getrandom`` for every save (the PID is refreshed in a forked child).
_tmp_serial = [os.getpid(), 0]


def _forked() -> None:
    _tmp_serial[0] = os.getpid()


os.register_at_fork(after_in_child=_forked)


def atomic_write(
    path: str, data: bytes, mode: int = 0o600, *, sync_dir: bool = True
) -> os.stat_result:
    """Replace ``path`` with ``data`` atomically and durably (Go: ``AtomicWriteFile``).

    The data reaches the disk before the rename (``fdatasync``), so a crash leaves the old
    file or the new one, never a short one. With ``sync_dir`` the directory is synced
    after the rename too, so the new file survives a crash once this returns (Go stops at
    the rename); a caller that saves the same file again before it returns may skip that.
    The directory is created if missing. Returns the new file's status (as ``os.stat``
    would after the rename).
    """
    directory, name = os.path.split(path)
    directory = directory or "."
    _tmp_serial[1] += 1
    tmp = os.path.join(directory, f".{name}.tmp-{_tmp_serial[0]}-{_tmp_serial[1]}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except FileNotFoundError:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a crashed process that had our PID
        tmp = os.path.join(directory, f".{name}.tmp-{_tmp_serial[0]}-{os.urandom(8).hex()}")
        fd = os.open(tmp, flags, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            st = os.fstat(fd)
            if st.st_mode & 0o7777 != mode:  # the umask took bits away
                os.fchmod(fd, mode)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return st


def format_time(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, trailing zeros trimmed (Go ``time.RFC3339Nano``)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(seconds)
    # Four-digit years, as Go writes them (strftime's %Y gives "1" for year 1).
    base = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def now() -> str:
    """The current time as Go writes ``time.Now().UTC()``."""
    return format_time(time.time_ns())


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any offset, any precision).

    Unparseable or empty text is the zero time (year 1), as Go would read it.
    """
    if not text:
        return _ZERO_NS
    try:
        main, _, rest = text.partition(".")
        frac = ""
        if rest:
            digits = len(rest) - len(rest.lstrip("0123456789"))
            frac, tz = rest[:digits], rest[digits:]
        else:
            main, tz = main[:19], main[19:]
        tz = "+00:00" if tz in ("Z", "z") else tz
        from datetime import datetime  # on first use: most commands never parse times

        dt = datetime.fromisoformat(main[:19] + tz)
        ns = int((frac + "000000000")[:9]) if frac else 0
        # Whole seconds (the fraction is kept apart): exact in a float for any year.
        return int(dt.timestamp()) * 1_000_000_000 + ns
    except ValueError:
        return _ZERO_NS


_ZERO_NS = -62135596800 * 1_000_000_000

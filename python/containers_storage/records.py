"""Layer, Image and Container records: frozen record classes mirroring the JSON files.

Attributes are the JSON keys of containers/storage 1.43 with ``-`` turned into ``_``
(``compressed-diff-digest`` is ``compressed_diff_digest``). Keys written by other versions
that we do not know are kept in ``extra`` and written back on save, in their place after
the known ones. Fields Go does not serialise (mount state, read-only origin, the computed
digest list) are filled in when a record is handed out and never written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from ._jsonstore import ZERO_TIME, parse_time
from ._struct import MISSING, field, fields, replace, struct

__all__ = [
    "Container",
    "IDMap",
    "Image",
    "ImageBigData",
    "Layer",
    "idmaps_from",
    "idmaps_to_tuples",
]


@struct(frozen=True)
class IDMap:
    """One ID range (Go ``idtools.IDMap``): container IDs ``container_id..+size`` are host
    IDs ``host_id..+size``."""

    __slots__ = ("container_id", "host_id", "size")

    container_id: int
    host_id: int
    size: int

    def to_json(self) -> dict[str, int]:
        """The JSON object Go writes for the range."""
        return {"container_id": self.container_id, "host_id": self.host_id, "size": self.size}


@struct(frozen=True)
class ImageBigData:
    """A named blob to store with a new image (Go ``ImageBigDataOption``): ``digest``, when
    given, is the digest recorded for a ``manifest*`` key (default: sha256 of ``data``)."""

    key: str
    data: bytes
    digest: str = ""

    def manifest_digester(self) -> Callable[[bytes], str] | None:
        """What :meth:`~containers_storage.Store.set_image_big_data` takes to record
        ``digest`` for a manifest (``None``: sha256 of the data)."""
        digest = self.digest
        return (lambda _data: digest) if digest else None


def idmaps_from(
    value: Iterable[IDMap | tuple[int, int, int] | Mapping[str, int]] | None,
) -> tuple[IDMap, ...]:
    """Normalise a map given as IDMaps, ``(container, host, size)`` tuples or JSON objects."""
    out: list[IDMap] = []
    for item in value or ():
        if isinstance(item, IDMap):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(IDMap(int(item["container_id"]), int(item["host_id"]), int(item["size"])))
        else:
            c, h, n = item
            out.append(IDMap(int(c), int(h), int(n)))
    return tuple(out)


def idmaps_to_tuples(maps: Iterable[IDMap]) -> list[tuple[int, int, int]]:
    """The ``(container, host, size)`` form the native functions take."""
    return [(m.container_id, m.host_id, m.size) for m in maps]


# How each field is read from JSON, written back, and whether Go omits it when empty.
_Codec = tuple[str, str, Callable[[Any], Any], Callable[[Any], Any], bool]


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if v else ()


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if v else ()


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def _int(v: Any) -> int:
    return int(v) if v else 0


def _dict(v: Any) -> dict[str, Any]:
    return dict(v) if v else {}


def _list(v: Any) -> list[Any]:
    return list(v)


def _maps_out(v: Any) -> list[dict[str, int]]:
    return [m.to_json() for m in v]


def _sorted_dict(v: Any) -> dict[str, Any]:
    return {k: v[k] for k in sorted(v)}


def _same(v: Any) -> Any:
    return v


R = TypeVar("R", bound="_Record")


class _FrozenDict(dict[str, Any]):
    """A read-only dict: the empty mapping records share as their default. A ``dict``
    (unlike ``MappingProxyType``) so that ``dataclasses.asdict`` and ``copy`` take it."""

    __slots__ = ()

    def _refuse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("a record's mapping is read-only")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


class _Record:
    """Shared JSON codec for the three record types."""

    __slots__ = ()
    _fields: ClassVar[tuple[_Codec, ...]]
    _defaults: ClassVar[dict[str, Any]]
    _by_key: ClassVar[dict[str, tuple[str, Callable[[Any], Any]]]]
    id: str
    created: str
    extra: Mapping[str, Any]

    @classmethod
    def from_json(cls: type[R], obj: Mapping[str, Any]) -> R:
        """Build a record from one decoded JSON object; unknown keys go to ``extra``.

        Stores load thousands of records, so this fills the instance's ``__dict__`` from
        the class defaults in one step instead of running ``__init__``.
        """
        values = dict(cls._defaults)
        extra: dict[str, Any] | None = None
        by_key = cls._by_key
        for key, value in obj.items():
            spec = by_key.get(key)
            if spec is None:
                if extra is None:
                    extra = {}
                extra[key] = value
            elif type(value) is str and spec[1] is _str:
                values[spec[0]] = value
            else:
                values[spec[0]] = spec[1](value)
        if extra:
            values["extra"] = extra
        new = object.__new__(cls)
        new.__dict__.update(values)
        return new

    @classmethod
    def _set_defaults(cls) -> None:
        defaults: dict[str, Any] = {}
        for f in fields(cls):
            if f.default is not MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not None:
                # Shared read-only empties: records never change their mappings in place.
                value = f.default_factory()
                defaults[f.name] = _FrozenDict(value) if isinstance(value, dict) else value
        cls._defaults = defaults
        type.__setattr__(cls, "__repr__", _Record._short_repr)

    def _short_repr(self) -> str:
        """``Layer(id=..., names=(...), ...)`` with the fields still at their default left
        out."""
        defaults = self._defaults
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.repr and (f.name not in defaults or value != defaults[f.name]):
                shown.append(f"{f.name}={value!r}")
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def to_json(self) -> dict[str, Any]:
        """The JSON object Go would write for this record (empty fields omitted)."""
        out: dict[str, Any] = {}
        for key, attr, _dec, enc, omitempty in self._fields:
            value = getattr(self, attr)
            if omitempty and not value:
                continue
            out[key] = enc(value)
        if self.extra:
            for key, value in self.extra.items():
                out.setdefault(key, value)
        return out

    @property
    def created_ns(self) -> int:
        """``created`` as nanoseconds since the epoch."""
        return parse_time(self.created)


def _codecs(
    *specs: tuple[str, Callable[[Any], Any], Callable[[Any], Any], bool],
) -> tuple[tuple[_Codec, ...], dict[str, tuple[str, Callable[[Any], Any]]]]:
    fields = tuple((key, key.replace("-", "_"), dec, enc, omit) for key, dec, enc, omit in specs)
    return fields, {key: (attr, dec) for key, attr, dec, _enc, _omit in fields}


def _created_out(v: Any) -> str:
    return v or ZERO_TIME


@struct(frozen=True)
class Layer(_Record):
    """A layer record (``layers.json``).

    ``mount_point``, ``mount_count`` come from ``mountpoints.json`` and ``read_only`` is
    true for layers of additional (read-only) stores; none of them is written to
    ``layers.json``. ``compression`` is Go's number: 0 none, 1 bzip2, 2 gzip, 3 xz, 4 zstd.
    """

    id: str
    names: tuple[str, ...] = ()
    parent: str = ""
    metadata: str = ""
    mountlabel: str = ""
    created: str = ""
    compressed_diff_digest: str = ""
    compressed_size: int = 0
    diff_digest: str = ""
    diff_size: int = 0
    compression: int = 0
    uidset: tuple[int, ...] = ()
    gidset: tuple[int, ...] = ()
    flags: Mapping[str, Any] = field(default_factory=dict)
    uidmap: tuple[IDMap, ...] = ()
    gidmap: tuple[IDMap, ...] = ()
    big_data_names: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    mount_point: str = field(default="", compare=False)
    mount_count: int = field(default=0, compare=False)
    read_only: bool = field(default=False, compare=False)

    _fields, _by_key = _codecs(
        ("id", _str, _same, False),
        ("names", _strs, _list, True),
        ("parent", _str, _same, True),
        ("metadata", _str, _same, True),
        ("mountlabel", _str, _same, True),
        ("created", _str, _created_out, False),
        ("compressed-diff-digest", _str, _same, True),
        ("compressed-size", _int, _same, True),
        ("diff-digest", _str, _same, True),
        ("diff-size", _int, _same, True),
        ("compression", _int, _same, True),
        ("uidset", _ints, _list, True),
        ("gidset", _ints, _list, True),
        ("flags", _dict, _sorted_dict, True),
        ("uidmap", idmaps_from, _maps_out, True),
        ("gidmap", idmaps_from, _maps_out, True),
        ("big-data-names", _strs, _list, True),
    )

    @property
    def incomplete(self) -> bool:
        """Whether the layer is flagged as being created or deleted."""
        return self.flags.get("incomplete") is True


@struct(frozen=True)
class Image(_Record):
    """An image record (``images.json``).

    ``layer`` is the top layer; ``mapped_layers`` are ID-mapped copies of it. ``digests``
    (computed, not stored) lists ``digest`` and the digests of every ``manifest*`` big-data
    item; ``read_only`` marks images of additional stores.
    """

    id: str
    digest: str = ""
    names: tuple[str, ...] = ()
    names_history: tuple[str, ...] = ()
    layer: str = ""
    mapped_layers: tuple[str, ...] = ()
    metadata: str = ""
    big_data_names: tuple[str, ...] = ()
    big_data_sizes: Mapping[str, int] = field(default_factory=dict)
    big_data_digests: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    flags: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    digests: tuple[str, ...] = field(default=(), compare=False)
    read_only: bool = field(default=False, compare=False)

    _fields, _by_key = _codecs(
        ("id", _str, _same, False),
        ("digest", _str, _same, True),
        ("names", _strs, _list, True),
        ("names-history", _strs, _list, True),
        ("layer", _str, _same, True),
        ("mapped-layers", _strs, _list, True),
        ("metadata", _str, _same, True),
        ("big-data-names", _strs, _list, True),
        ("big-data-sizes", _dict, _sorted_dict, True),
        ("big-data-digests", _dict, _sorted_dict, True),
        ("created", _str, _created_out, False),
        ("flags", _dict, _sorted_dict, True),
    )

    @property
    def top_layer(self) -> str:
        """The image's top layer ID (Go: ``TopLayer``)."""
        return self.layer

    def with_digests(self) -> Image:
        """This record with ``digest`` defaulted and ``digests`` computed as Go's
        ``recomputeDigests`` does (manifest items in big-data order)."""
        seen: list[str] = []
        if self.digest:
            seen.append(self.digest)
        for name in self.big_data_names:
            if name.startswith("manifest"):
                d = self.big_data_digests.get(name, "")
                if d and d not in seen:
                    seen.append(d)
        for name, d in sorted(self.big_data_digests.items()):
            if name.startswith("manifest") and d and d not in seen:
                seen.append(d)
        digest = self.digest or (seen[0] if seen else "")
        return replace(self, digest=digest, digests=tuple(seen))

    def _fill_digests(self) -> Image:
        """:meth:`with_digests` in place, for a record just decoded and not yet shared."""
        done = self.with_digests()
        self.__dict__["digest"] = done.digest
        self.__dict__["digests"] = done.digests
        return self


@struct(frozen=True)
class Container(_Record):
    """A container record (``containers.json``); ``image`` and ``layer`` are always
    written, even when empty."""

    id: str
    names: tuple[str, ...] = ()
    image: str = ""
    layer: str = ""
    metadata: str = ""
    big_data_names: tuple[str, ...] = ()
    big_data_sizes: Mapping[str, int] = field(default_factory=dict)
    big_data_digests: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    uidmap: tuple[IDMap, ...] = ()
    gidmap: tuple[IDMap, ...] = ()
    flags: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _fields, _by_key = _codecs(
        ("id", _str, _same, False),
        ("names", _strs, _list, True),
        ("image", _str, _same, False),
        ("layer", _str, _same, False),
        ("metadata", _str, _same, True),
        ("big-data-names", _strs, _list, True),
        ("big-data-sizes", _dict, _sorted_dict, True),
        ("big-data-digests", _dict, _sorted_dict, True),
        ("created", _str, _created_out, False),
        ("uidmap", idmaps_from, _maps_out, True),
        ("gidmap", idmaps_from, _maps_out, True),
        ("flags", _dict, _sorted_dict, True),
    )

    @property
    def volatile(self) -> bool:
        """Whether the container was created volatile (Go: ``flags.Volatile``)."""
        return self.flags.get("Volatile") is True

    @property
    def mount_label(self) -> str:
        """The SELinux mount label from the flags."""
        return str(self.flags.get("MountLabel", "") or "")

    @property
    def process_label(self) -> str:
        """The SELinux process label from the flags."""
        return str(self.flags.get("ProcessLabel", "") or "")

    @property
    def mount_opts(self) -> tuple[str, ...]:
        """Mount options recorded at creation (Go: ``flags.MountOpts``)."""
        return _strs(self.flags.get("MountOpts"))


for _cls in (Layer, Image, Container):
    _cls._set_defaults()

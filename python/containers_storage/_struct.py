"""Plain record classes: what this package used from :mod:`dataclasses`, without its cost.

Importing :mod:`dataclasses` pulls in :mod:`inspect` (about 11 ms here) and each decorated
class compiles half a dozen generated methods (about 1 ms a class), on every start of the
``containers-storage`` command. :func:`struct` gives a class the same ``__init__`` (fields in
order, defaults, ``default_factory``), ``__repr__``, ``__eq__``, ``__hash__`` and frozen
assignment from one shared implementation, and type checkers see it as a dataclass
(``typing.dataclass_transform``).

To the :mod:`dataclasses` module a record class is a dataclass: ``__dataclass_fields__`` is
built (as :class:`dataclasses.Field` objects) the first time something asks for it, so
``dataclasses.is_dataclass``, ``fields``, ``asdict``, ``astuple`` and ``replace`` work
without this module importing :mod:`dataclasses` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["Field", "FrozenInstanceError", "asdict", "field", "fields", "replace", "struct"]

T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record (as ``dataclasses.FrozenInstanceError``)."""


class Field:
    """One field: its name, default or default factory, and whether it is compared and
    shown in ``repr``."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr", "type")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Callable[[], Any] | None = None,
        compare: bool = True,
        repr: bool = True,
    ) -> None:
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | None = None,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A field with options, as ``dataclasses.field``."""
    return Field(default, default_factory, compare, repr)


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order."""
    spec: tuple[Field, ...] = obj.__struct_fields__
    return spec


class _Plan:
    """What ``__init__`` needs of a class, worked out once."""

    __slots__ = ("defaults", "factories", "has_dict", "name_set", "names", "post")

    def __init__(self, cls: type, spec: tuple[Field, ...]) -> None:
        self.names = tuple(f.name for f in spec)
        self.name_set = frozenset(self.names)
        self.defaults = {f.name: f.default for f in spec if f.default is not MISSING}
        self.factories = tuple(
            (f.name, f.default_factory)
            for f in spec
            if f.default is MISSING and f.default_factory is not None
        )
        self.has_dict = "__slots__" not in cls.__dict__
        self.post = getattr(cls, "__post_init__", None)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    plan: _Plan = self.__struct_plan__
    names = plan.names
    if len(args) > len(names):
        raise TypeError(
            f"{type(self).__name__}() takes {len(names)} positional arguments "
            f"but {len(args)} were given"
        )
    values = dict(plan.defaults)
    for name, factory in plan.factories:
        if name not in kwargs:
            values[name] = factory()
    if args:
        values.update(zip(names, args, strict=False))
    if kwargs:
        unknown = sorted(k for k in kwargs if k not in plan.name_set)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {unknown}")
        for name in kwargs:
            if names.index(name) < len(args):
                raise TypeError(f"{type(self).__name__}() got multiple values for {name!r}")
        values.update(kwargs)
    if len(values) != len(names):
        missing = next(n for n in names if n not in values)
        raise TypeError(f"{type(self).__name__}() missing required argument {missing!r}")
    if plan.has_dict:
        object.__getattribute__(self, "__dict__").update(values)
    else:
        setter = object.__setattr__
        for name, value in values.items():
            setter(self, name, value)
    if plan.post is not None:
        plan.post(self)


def _repr(self: Any) -> str:
    spec: tuple[Field, ...] = self.__struct_fields__
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in spec if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _key(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in self.__struct_fields__ if f.compare)


def _eq(self: object, other: object) -> Any:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    return bool(_key(self) == _key(other))


def _hash(self: Any) -> int:
    return hash(_key(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _reduce(self: Any) -> tuple[Any, ...]:
    # copy, deepcopy and pickle of a frozen record: through __init__, as assignment refuses.
    return (type(self), tuple(getattr(self, name) for name in self.__struct_plan__.names))


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


class _DataclassFields:
    """``__dataclass_fields__``: the :class:`dataclasses.Field` view of a record class's
    fields, made on first access (whoever asks has imported :mod:`dataclasses` already) and
    then cached on the class."""

    __slots__ = ()

    def __get__(self, obj: object, cls: type) -> dict[str, Any]:
        import dataclasses

        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.default is not MISSING:
                spec = dataclasses.field(default=f.default, repr=f.repr, compare=f.compare)
            elif f.default_factory is not None:
                spec = dataclasses.field(
                    default_factory=f.default_factory, repr=f.repr, compare=f.compare
                )
            else:
                spec = dataclasses.field(repr=f.repr, compare=f.compare)
            spec.name = f.name
            spec.type = f.type
            spec._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            out[f.name] = spec
        type.__setattr__(cls, "__dataclass_fields__", out)
        return out


def _process(cls: type[T], frozen: bool) -> type[T]:
    spec: list[Field] = []
    seen: set[str] = set()
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__struct_fields__", ()):
            if f.name not in seen:
                spec.append(f)
                seen.add(f.name)
    # Not inspect.get_annotations: importing inspect is the cost this module avoids.
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    for name, annotation in annotations.items():
        if name.startswith("__") or name in seen or "ClassVar" in str(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        if isinstance(value, Field):
            f = value
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        else:
            f = Field(value)
        f.name = name
        f.type = annotation
        spec.append(f)
        seen.add(name)
    methods: dict[str, Any] = {
        "__struct_fields__": tuple(spec),
        "__struct_plan__": _Plan(cls, tuple(spec)),
        "__dataclass_fields__": _DataclassFields(),
        "__match_args__": tuple(f.name for f in spec),
        "__init__": _init,
        "__eq__": _eq,
    }
    if "__repr__" not in cls.__dict__:
        methods["__repr__"] = _repr
    if frozen:
        methods.update(
            __hash__=_hash,
            __setattr__=_frozen_setattr,
            __delattr__=_frozen_delattr,
            __reduce__=_reduce,
        )
    else:
        methods["__hash__"] = None
    for name, value in methods.items():
        setattr(cls, name, value)
    return cls


@overload
def struct(cls: type[T], /) -> type[T]: ...


@overload
def struct(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field, Field))
def struct(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Make ``cls`` a record class from its annotated fields (``@dataclass`` without
    ``slots``, ``order`` or ``kw_only``)."""
    if cls is None:
        return lambda c: _process(c, frozen)
    return _process(cls, frozen)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of ``obj`` with ``changes``: the one way records are copied.

    As ``dataclasses.replace``, but a class with a ``__dict__`` and no ``__post_init__`` is
    copied without running ``__init__`` (it would only check what the record already
    holds), fast enough to run over a whole store.

    Raises:
        TypeError: A change names no field of the class.
    """
    plan: _Plan = getattr(obj, "__struct_plan__")  # noqa: B009 (no static attribute)
    for name in changes:
        if name not in plan.name_set:
            raise TypeError(f"{type(obj).__name__} has no field {name!r}")
    if plan.has_dict and plan.post is None:
        new: T = object.__new__(type(obj))
        state = new.__dict__
        state.update(obj.__dict__)
        state.update(changes)
        return new
    values = {name: getattr(obj, name) for name in plan.names}
    values.update(changes)
    return type(obj)(**values)


def asdict(obj: Any) -> dict[str, Any]:
    """The fields of ``obj`` as a dictionary (shallow, unlike ``dataclasses.asdict``)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}

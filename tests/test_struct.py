"""The record-class decorator that stands in for dataclasses (containers_storage._struct)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

import pytest
from containers_storage._struct import (
    FrozenInstanceError,
    asdict,
    field,
    fields,
    replace,
    struct,
)
from containers_storage.records import IDMap, Layer


@struct(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", compare=False, repr=False)
    kind: ClassVar[str] = "point"


@struct
class Mutable:
    name: str
    items: dict[str, int] = field(default_factory=dict)


@struct(frozen=True)
class Point3(Point):
    z: int = 0


def test_init_positional_keyword_and_defaults() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags, p.note) == (1, 0, [], "")
    q = Point(1, 2, ["a"], note="n")
    assert (q.x, q.y, q.tags, q.note) == (1, 2, ["a"], "n")
    assert Point(y=5, x=4).y == 5
    # Each instance gets its own default from the factory.
    assert Point(1).tags is not Point(1).tags
    # Class variables are not fields.
    assert [f.name for f in fields(Point)] == ["x", "y", "tags", "note"]
    assert Point.kind == "point"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required argument 'x'"),
        ((1, 2, [], "", 5), {}, "takes 4 positional arguments but 5 were given"),
        ((1,), {"x": 2}, "multiple values for 'x'"),
        ((1,), {"w": 2}, "unexpected arguments ['w']"),
    ],
)
def test_init_rejects_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Point(*args, **kwargs)


def test_eq_hash_and_compare_false() -> None:
    assert Point(1, 2, note="a") == Point(1, 2, note="b")  # note is not compared
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Point3(1)  # another class is never equal
    assert Point(1, 2).__eq__((1, 2)) is NotImplemented
    assert hash(IDMap(0, 1000, 10)) == hash(IDMap(0, 1000, 10))
    assert len({IDMap(0, 1000, 10), IDMap(0, 1000, 10), IDMap(1, 1000, 10)}) == 2
    with pytest.raises(TypeError):
        hash(Mutable("m"))  # not frozen: unhashable, as a dataclass with eq


def test_repr_skips_repr_false_fields() -> None:
    assert repr(Point(1, 2, ["t"], note="secret")) == "Point(x=1, y=2, tags=['t'])"
    assert repr(IDMap(0, 1000, 10)) == "IDMap(container_id=0, host_id=1000, size=10)"


def test_frozen_and_mutable() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y
    m = Mutable("a")
    m.name = "b"
    m.items["k"] = 1
    assert m == Mutable("b", {"k": 1})


def test_slots_class() -> None:
    m = IDMap(1, 2, 3)
    assert not hasattr(m, "__dict__")
    assert (m.container_id, m.host_id, m.size) == (1, 2, 3)


def test_inheritance_adds_fields_after_the_base() -> None:
    p = Point3(1, 2, [], "", 3)
    assert [f.name for f in fields(p)] == ["x", "y", "tags", "note", "z"]
    assert p.z == 3 and p.x == 1


def test_replace_and_asdict() -> None:
    p = Point(1, 2, ["a"])
    q = replace(p, y=5)
    assert (q.x, q.y, q.tags) == (1, 5, ["a"]) and p.y == 2
    with pytest.raises(TypeError, match="no field 'w'"):
        replace(p, w=1)
    assert asdict(p) == {"x": 1, "y": 2, "tags": ["a"], "note": ""}


def test_replace_runs_post_init_where_there_is_one() -> None:
    """Without ``__post_init__`` a copy skips ``__init__``; with one, it runs (as dataclasses)."""
    seen: list[int] = []

    @struct(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            seen.append(self.n)

    c = Checked(1)
    assert replace(c, n=2) == Checked(2) and seen == [1, 2, 2]
    assert replace(IDMap(1, 2, 3), size=4) == IDMap(1, 2, 4)  # slots: through __init__ too


def test_records_behave_as_before() -> None:
    layer = Layer(id="a" * 64, names=("n",))
    assert layer.parent == "" and dict(layer.flags) == {}
    assert replace(layer, parent="b" * 64).parent == "b" * 64
    assert replace(layer, names=("m",)) == Layer(id="a" * 64, names=("m",))
    with pytest.raises(FrozenInstanceError):
        layer.id = "x"  # type: ignore[misc]


def test_importing_the_store_does_not_import_dataclasses() -> None:
    """The point of the module: no dataclasses (and no inspect) at start-up."""
    code = (
        "import sys, containers_storage.store, containers_storage.drivers.overlay, "
        "containers_storage.cli.main\n"
        "print(sorted({'dataclasses', 'inspect'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

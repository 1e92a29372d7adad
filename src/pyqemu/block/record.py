"""Plain data records for the block layer, without the dataclasses module.

``pyqemu-img check``/``map``/``info`` are dominated by start-up time; importing
``dataclasses`` (which pulls in inspect, ast, re, enum, typing) and exec-ing each
decorated class's methods cost about as much as qemu-img's whole run. A record class
writes its ``__init__`` by hand and lists its fields in ``_fields``; this base gives it
equality, repr, ``astuple`` and ``replace`` from that list.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self

__all__ = ["FieldsRecord", "Record"]


class Record:
    """Base of a plain data record: ``_fields`` names its fields, in order."""

    _fields: ClassVar[tuple[str, ...]] = ()

    def astuple(self) -> tuple[Any, ...]:
        """The field values in ``_fields`` order (``dataclasses.astuple``, shallow)."""
        return tuple(getattr(self, name) for name in self._fields)

    def replace(self, **changes: Any) -> Self:
        """A shallow copy with ``changes`` applied (``dataclasses.replace``)."""
        import copy  # only here: it is not free at start-up

        new = copy.copy(self)
        for name, value in changes.items():
            if name not in self._fields:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            setattr(new, name, value)
        return new

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.astuple() == other.astuple()  # type: ignore[attr-defined]

    # (defining __eq__ leaves __hash__ None: unhashable, like a non-frozen dataclass)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"


class FieldsRecord(Record):
    """A record whose fields are its class annotations (``ClassVar`` ones excepted), in
    order, with class-level defaults; ``__init__`` takes them positionally or by name.

    For on-disk headers packed with ``struct`` (``Fmt.pack(*rec.astuple())``) and small
    records: the generic ``__init__`` is slower than a hand-written one, so records made
    per request on a hot path write their own.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ann = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (no inspect)
        cls._fields = tuple(name for name, typ in ann.items()
                            if not str(typ).startswith(("ClassVar", "typing.ClassVar")))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._fields
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields, "
                            f"{len(args)} given")
        for name, value in zip(names, args):
            setattr(self, name, value)
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            setattr(self, name, value)
        for name in names[len(args):]:
            if name not in kwargs and not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} missing field {name!r}")

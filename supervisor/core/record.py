"""Value objects without dataclasses: the core's events, effects and policies.

``@dataclass`` costs the supervisor ~30 ms and ~2.5 MB at start (it imports inspect, ast, and
compiles six methods per class when the class is created). A Record declares its fields in
``__slots__`` and its defaults in ``defaults``::

    class Exited(Record):
        __slots__ = ("pid", "reason", "clean", "group_alive")
        defaults = {"group_alive": False}

and behaves like ``@dataclass(frozen=True)``: positional or keyword construction (a missing or
unknown argument is a TypeError naming it), ``__match_args__`` (positional ``case`` patterns),
equality (same class, equal fields), a hash consistent with it, a dataclass-like repr
(``Exited(pid=1, reason='x', clean=True, group_alive=False)``), and FrozenInstanceError (an
AttributeError) on assignment or deletion. ``Factory(dict)`` as a default is
``field(default_factory=dict)``; ``class StopRun(Record, frozen=False)`` is a mutable record, like
a dataclass without frozen=True (assignable, unhashable).

Creating a class costs a few microseconds: a record class's ``__init__`` binds its arguments
generically for its first few constructions and is compiled on the next one, its ``__eq__`` and ``__hash__`` on their first use (~0.1 ms each, once; most classes
of a run are never built, fewer compared), and records of the same shape share the compiled code.
They are then as fast as a dataclass's (``__init__`` faster: it sets the slots directly).
"""

_MISSING = object()  # "no argument given" for a Factory default


class FrozenInstanceError(AttributeError):
    """An assignment to, or deletion of, a field of a frozen record."""


class Factory:
    """A default made afresh for each record: ``defaults = {"fields": Factory(dict)}``."""

    __slots__ = ("make",)

    def __init__(self, make) -> None:
        self.make = make

    def __repr__(self) -> str:
        return f"Factory({getattr(self.make, '__qualname__', self.make)!r})"


def values(record: "Record") -> tuple:
    """The record's field values, in declaration order."""
    return tuple([getattr(record, name) for name in record._fields])


class Record:
    __slots__ = ()
    __match_args__: tuple = ()
    _fields: tuple = ()
    _defaults: dict = {}
    _frozen = True

    def __init_subclass__(cls, frozen: bool = True, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__qualname__
        own = cls.__dict__.get("__slots__")
        if own is None:
            raise TypeError(f"{name}: a Record declares its fields in __slots__ (() when it has none)")
        own = (own,) if isinstance(own, str) else tuple(own)
        for method in ("__init__", "__eq__", "__hash__"):
            if method in cls.__dict__:
                raise TypeError(f"{name}: a Record generates its {method} from __slots__ and defaults")
        parent = cls.__mro__[1]
        if parent is not Record and frozen != parent._frozen:
            raise TypeError(f"{name}: a {'frozen' if frozen else 'mutable'} record cannot inherit from a "
                            f"{'frozen' if parent._frozen else 'mutable'} one")
        for field in own:
            if field in cls._fields:
                raise TypeError(f"{name}: field {field!r} is already declared by {parent.__qualname__}")
            if not (isinstance(field, str) and field.isidentifier()) or field.startswith("_") or field == "self":
                raise TypeError(f"{name}: field {field!r} must be a public identifier")
        fields = cls._fields + own  # inherited fields first, as with dataclasses
        declared = cls.__dict__.get("defaults", {})
        if "defaults" in cls.__dict__:
            del cls.defaults  # read once; what instances see is _defaults
        defaults = {**cls._defaults, **declared}
        unknown = sorted(set(defaults) - set(fields))
        if unknown:
            raise TypeError(f"{name}: defaults for unknown fields {', '.join(unknown)}")
        for field, default in declared.items():
            if isinstance(default, (list, dict, set, bytearray)):
                raise TypeError(f"{name}: the default of {field!r} would be shared by every record: "
                                f"use Factory({type(default).__name__})")
        after_default = False
        for field in fields:
            if field in defaults:
                after_default = True
            elif after_default:
                raise TypeError(f"{name}: non-default argument {field!r} follows default argument")
        cls._fields = cls.__match_args__ = fields
        cls._defaults, cls._frozen = defaults, frozen
        # compiled for this class when first used (never a parent's: those compare the parent's fields)
        cls.__init__, cls.__eq__, cls.__hash__ = _warm_up_init, _compile_then_eq, _compile_then_hash
        cls._built = 0
        if not frozen:
            cls.__setattr__, cls.__delattr__, cls.__hash__ = object.__setattr__, object.__delattr__, None

    def __repr__(self) -> str:
        shown = ", ".join([f"{name}={getattr(self, name)!r}" for name in self._fields])
        return f"{type(self).__qualname__}({shown})"

    def __reduce__(self) -> tuple:  # copy, deepcopy and pickle rebuild it through __init__
        return type(self), values(self)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


WARM_UP = 8  # constructions of a class before its own __init__ is compiled


def _warm_up_init(self, *args, **kwargs) -> None:
    """A record class's first constructions: the fields bound here, without compiling anything.
    Most record classes are built a few times per process (a service's config, an observation):
    compiling their __init__ (0.2-1 ms for the config's 50 fields) would cost `svctl status` more
    than building them. A class built WARM_UP times (the events) gets its compiled __init__; so
    does any call this cannot bind (a missing or unknown argument), for the dataclass's own error."""
    cls = type(self)
    cls._built += 1
    fields, defaults = cls._fields, cls._defaults
    if cls._built > WARM_UP or len(args) > len(fields):
        return _compile_then_init(self, *args, **kwargs)
    values = dict(zip(fields, args, strict=False))  # fewer args than fields: the rest by keyword
    for name, value in kwargs.items():
        if name in values or name not in defaults and name not in fields:
            return _compile_then_init(self, *args, **kwargs)
        values[name] = value
    for name in fields:
        if name in values:
            value = values[name]
        elif name in defaults:
            value = defaults[name]
            if isinstance(value, Factory):
                value = value.make()
        else:
            return _compile_then_init(self, *args, **kwargs)
        object.__setattr__(self, name, value)


def _compile_then_init(self, *args, **kwargs) -> None:
    """A record class's first construction: compile its __init__, then run it."""
    cls = type(self)
    _compile(cls, _init_source(cls), ("__init__",))
    cls.__init__(self, *args, **kwargs)


def _compile_then_eq(self, other: object) -> bool:
    """A record class's first comparison: compile its __eq__ (and __hash__), then run it."""
    cls = type(self)
    _compile(cls, _eq_hash_source(cls), ("__eq__", "__hash__") if cls._frozen else ("__eq__",))
    return cls.__eq__(self, other)


def _compile_then_hash(self) -> int:
    cls = type(self)
    _compile(cls, _eq_hash_source(cls), ("__eq__", "__hash__"))
    return cls.__hash__(self)


_compiled: dict = {}  # source -> code: records of the same shape (no fields, one "name"...) share it


def _compile(cls: type, source: tuple, methods: tuple) -> None:
    text, scope = source
    code = _compiled.get(text)
    if code is None:
        code = _compiled[text] = compile(text, "<record>", "exec")
    exec(code, scope)
    for method in methods:
        function = scope[method]
        function.__qualname__, function.__module__ = f"{cls.__qualname__}.{method}", cls.__module__
        setattr(cls, method, function)


def _init_source(cls: type) -> tuple:
    """An __init__ like a dataclass's for CLS's fields and defaults, each field set through its
    slot's descriptor (which bypasses the frozen __setattr__ and the attribute lookup)."""
    scope: dict = {"_MISSING": _MISSING}
    params, body = ["self"], []
    for index, name in enumerate(cls._fields):
        scope[f"_set_{index}"] = getattr(cls, name).__set__
        value = name
        if name not in cls._defaults:
            params.append(name)
        elif isinstance(cls._defaults[name], Factory):
            scope[f"_make_{index}"] = cls._defaults[name].make
            params.append(f"{name}=_MISSING")
            value = f"_make_{index}() if {name} is _MISSING else {name}"
        else:
            scope[f"_default_{index}"] = cls._defaults[name]
            params.append(f"{name}=_default_{index}")
        body.append(f"    _set_{index}(self, {value})\n")
    return f"def __init__({', '.join(params)}):\n{''.join(body) or '    pass'}\n", scope


def _eq_hash_source(cls: type) -> tuple:
    """A dataclass's __eq__ and __hash__: the same class and equal field tuples."""
    mine, theirs = (f"({''.join(f'{who}.{name}, ' for name in cls._fields)})" for who in ("self", "other"))
    return (f"def __eq__(self, other):\n"
            f"    if other.__class__ is self.__class__:\n"
            f"        return {mine} == {theirs}\n"
            f"    return NotImplemented\n"
            f"def __hash__(self):\n"
            f"    return hash({mine})\n"), {}

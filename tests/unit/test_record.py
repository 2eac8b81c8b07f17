"""core/record.py: the core's records behave like the frozen dataclasses they replaced."""

import copy
import dataclasses
import pickle

import pytest

from supervisor.core import events as ev
from supervisor.core.backoff import BackoffPolicy, FailureHistory
from supervisor.core.machine import Policy, StopRun
from supervisor.core.record import Factory, FrozenInstanceError, Record
from supervisor.core.schedule import parse_schedule


@dataclasses.dataclass(frozen=True)
class Exited:  # the dataclass ev.Exited was: errors and reprs must read the same
    pid: int
    reason: str
    clean: bool
    group_alive: bool = False


def error_of(make) -> str:
    with pytest.raises(TypeError) as caught:
        make()
    return str(caught.value)


# ---- construction ---------------------------------------------------------------------------


def test_positional_keyword_and_defaults():
    assert ev.Exited(1, "x", True) == ev.Exited(pid=1, reason="x", clean=True, group_alive=False)
    exited = ev.Exited(1, "x", clean=True, group_alive=True)
    assert (exited.pid, exited.reason, exited.clean, exited.group_alive) == (1, "x", True, True)
    assert ev.Reload().source == "signal" and ev.Reload(source="cli").source == "cli"
    assert ev.HealthResult(False).reason == "" and ev.HealthResult(False).probe == 0


@pytest.mark.parametrize("arguments", [(1,), (1, "x", True, False, 5)])
def test_wrong_positional_arguments_are_the_dataclass_type_errors(arguments):
    assert error_of(lambda: ev.Exited(*arguments)) == error_of(lambda: Exited(*arguments))


@pytest.mark.parametrize("keywords", [{"clean": True, "colour": 1}, {"pid": 2}, {}])
def test_wrong_keyword_arguments_are_the_dataclass_type_errors(keywords):
    message = error_of(lambda: ev.Exited(1, "x", **keywords))
    assert message == error_of(lambda: Exited(1, "x", **keywords))
    assert message.startswith("Exited.__init__() ")


class Fresh(Record):  # never built before the test below: its __init__ is compiled by that call
    __slots__ = ("a", "b")


def test_the_first_construction_reports_errors_too():
    assert error_of(lambda: Fresh(1)) == "Fresh.__init__() missing 1 required positional argument: 'b'"
    assert Fresh(1, 2).b == 2


def test_records_of_the_same_shape_share_code_but_not_names():
    ev.Timer("stop")
    assert error_of(lambda: ev.CancelTimer()) == "CancelTimer.__init__() missing 1 required positional argument: 'name'"
    assert ev.CancelTimer("a") != ev.Timer("a") and ev.Timer("a") == ev.Timer("a")


def test_a_factory_default_is_made_for_each_record():
    first, second = ev.Log("a"), ev.Log("b")
    assert first.fields == {} and first.fields is not second.fields
    given = {"pid": 1}
    assert ev.Log("a", given).fields is given
    assert FailureHistory().times == [] and FailureHistory().times is not FailureHistory().times
    assert Policy(parse_schedule("TERM/1")).backoff == BackoffPolicy()


# ---- equality, hash, repr ---------------------------------------------------------------------


def test_equality_is_same_class_and_same_fields():
    assert ev.Exited(1, "x", True) == ev.Exited(1, "x", True)
    assert ev.Exited(1, "x", True) != ev.Exited(1, "x", False)
    assert ev.Timer("stop") != ev.CancelTimer("stop")  # same fields, another class
    assert ev.GroupGone() == ev.GroupGone() and ev.GroupGone() != ev.Ready()
    assert ev.Spawned(1) != (1,) and ev.Spawned(1) != 1
    assert ev.Timer("health") in [ev.Timer("stop"), ev.Timer("health")]


def test_hash_is_consistent_with_equality():
    assert hash(ev.Exited(1, "x", True)) == hash(ev.Exited(1, "x", True, False))
    assert len({ev.Timer("a"), ev.Timer("a"), ev.CancelTimer("a"), ev.StopProbe(), ev.StopProbe()}) == 3
    with pytest.raises(TypeError):
        hash(ev.Log("a", {}))  # an unhashable field, as with the dataclass


def test_repr_reads_like_the_dataclass():
    assert repr(ev.Exited(1, "x", True)) == "Exited(pid=1, reason='x', clean=True, group_alive=False)"
    assert repr(ev.Exited(1, "x", True)) == repr(Exited(1, "x", True))
    assert repr(ev.GroupGone()) == "GroupGone()"
    assert repr(ev.Log("stopped")) == "Log(event='stopped', fields={})"
    assert repr(StopRun("exit")) == "StopRun(purpose='exit', index=0, group=False, exhausted=False, pending=None)"


# ---- frozen and mutable -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pid", "colour"])
def test_frozen_records_refuse_assignment_and_deletion(name):
    exited = ev.Exited(1, "x", True)
    with pytest.raises(FrozenInstanceError, match=f"cannot assign to field '{name}'"):
        setattr(exited, name, 2)
    with pytest.raises(AttributeError, match=f"cannot delete field '{name}'"):
        delattr(exited, name)
    assert issubclass(FrozenInstanceError, AttributeError) and exited.pid == 1
    assert not hasattr(exited, "__dict__")


def test_mutable_records_stay_assignable_and_unhashable():
    run = StopRun("exit")
    run.index, run.exhausted = 2, True
    assert run == StopRun("exit", 2, False, True, None)
    history = FailureHistory(times=[1.0], streak=1)
    history.reset()
    assert history == FailureHistory()
    with pytest.raises(TypeError):
        hash(run)


def test_copies_and_pickles_rebuild_the_record():
    exited = ev.Exited(1, "x", True, True)
    assert copy.copy(exited) == exited and pickle.loads(pickle.dumps(exited)) == exited
    log = ev.Log("a", {"pids": [1]})
    deep = copy.deepcopy(log)
    assert deep == log and deep.fields["pids"] is not log.fields["pids"]


# ---- match ------------------------------------------------------------------------------------


def test_positional_and_keyword_patterns():
    match ev.Exited(1, "exit status 1", False):
        case ev.Exited(pid, reason, clean, group_alive):
            assert (pid, reason, clean, group_alive) == (1, "exit status 1", False, False)
        case _:
            pytest.fail("no match")
    match ev.Signal(15, group=True):
        case ev.Spawn():
            pytest.fail("another class matched")
        case ev.Signal(number, cont=cont, group=True):
            assert (number, cont) == (15, False)
        case _:
            pytest.fail("no match")


def test_every_event_and_effect_matches_positionally_by_its_fields():
    records = [value for value in vars(ev).values() if isinstance(value, type) and issubclass(value, Record)
               and value is not Record]
    assert len(records) >= 28
    for record in records:
        assert record.__match_args__ == record.__slots__ == record._fields, record


# ---- declaring records ------------------------------------------------------------------------


def declare(**body):
    return type("Bad", (Record,), body)


@pytest.mark.parametrize(("body", "message"), [
    ({}, "declares its fields in __slots__"),
    ({"__slots__": ("a",), "__init__": lambda self: None}, "generates its __init__"),
    ({"__slots__": ("a",), "__eq__": lambda self, other: True}, "generates its __eq__"),
    ({"__slots__": ("a",), "defaults": {"b": 1}}, "defaults for unknown fields b"),
    ({"__slots__": ("a", "b"), "defaults": {"a": 1}}, "non-default argument 'b' follows default argument"),
    ({"__slots__": ("a",), "defaults": {"a": []}}, "use Factory(list)"),
    ({"__slots__": ("_a",)}, "field '_a' must be a public identifier"),
])
def test_bad_declarations_fail_when_the_class_is_created(body, message):
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        declare(**body)


class Parent(Record):
    __slots__ = ("a",)


def test_inherited_fields_come_first_and_are_never_the_parents_only():
    assert Parent(1) == Parent(1)  # the parent's methods are compiled first

    class Child(Parent):
        __slots__ = ("b",)
        defaults = {"b": 2}

    Child.__qualname__ = "Child"  # before its first construction, which names its methods
    assert Child(1) == Child(a=1, b=2) and Child(1, 3) != Child(1, 2) and hash(Child(1)) != hash(Child(1, 3))
    assert Child.__match_args__ == ("a", "b") and repr(Child(1)) == "Child(a=1, b=2)"
    assert Child(1) != Parent(1)
    with pytest.raises(TypeError, match="already declared by Parent"):
        type("Again", (Parent,), {"__slots__": ("a",)})
    with pytest.raises(TypeError, match="a mutable record cannot inherit from a frozen one"):
        class Mutable(Parent, frozen=False):
            __slots__ = ()


def test_factory_repr_names_what_it_makes():
    assert repr(Factory(dict)) == "Factory('dict')"

"""The error types: wire codes, exit statuses (one rule for truc and truc run), finding one in exception groups."""

from __future__ import annotations

import pytest

from protocol.errors import (
    EXIT_FIX_IT,
    EXIT_NOT_RUNNING,
    EXIT_REFUSED,
    ConfigError,
    NodeNotRunningError,
    SchemaError,
    StoreCorruptError,
    StoreLockedError,
    TrucError,
    error_class,
    find_truc_error,
)


def every_error_type() -> list[type[TrucError]]:
    out, todo = [], [TrucError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def test_every_error_type_has_one_of_the_documented_exit_statuses() -> None:
    for cls in every_error_type():
        assert cls.exit_code in (EXIT_REFUSED, EXIT_FIX_IT, EXIT_NOT_RUNNING), cls
    assert [cls for cls in every_error_type() if cls.exit_code == EXIT_NOT_RUNNING] == [NodeNotRunningError]


@pytest.mark.parametrize("cls", every_error_type(), ids=lambda c: c.__name__)
def test_an_error_the_node_reports_exits_like_the_same_error_raised_here(cls: type[TrucError]) -> None:
    """``truc`` rebuilds a node's error from its wire code: the exit status must survive the trip."""
    if error_class(cls.code) is not cls:
        pytest.skip(f"{cls.code} is shared with {error_class(cls.code).__name__}")
    rebuilt = TrucError.from_wire(cls.code, "as the node said it")
    assert type(rebuilt) is cls and rebuilt.exit_code == cls.exit_code


def test_a_store_in_use_is_a_refusal_but_a_damaged_one_must_be_fixed() -> None:
    # A subclass may say otherwise than its base: StoreLockedError passes if the running node stops.
    assert StoreLockedError("x").exit_code == EXIT_REFUSED
    assert StoreCorruptError("x").exit_code == EXIT_FIX_IT


def test_find_truc_error_looks_inside_nested_groups_depth_first() -> None:
    inner = ConfigError("the port is in use")
    group = BaseExceptionGroup("nursery", [KeyboardInterrupt(), ExceptionGroup("task", [ValueError(), inner])])
    assert find_truc_error(group) is inner
    assert find_truc_error(SchemaError("x")) is not None
    assert find_truc_error(ExceptionGroup("none", [ValueError(), RuntimeError()])) is None
    assert find_truc_error(ValueError()) is None

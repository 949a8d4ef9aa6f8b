"""The state check of tests/test_purity.py catches what it was written for, and its allow-list is the
core's: each entry is used by some pure module today."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import pytest

from meshd.core.state import DeviceNames
from tests.test_purity import (
    CORE_VALUES,
    DECIDING,
    IMMUTABLE_CALLS,
    _made,
    _module_state,
    _not_frozen,
    _source,
)


def test_the_state_check_sees_a_module_level_memo_and_not_a_constant_table() -> None:
    memo = "_memo: dict[int, int] = {}\ndef tell(k):\n    _memo.pop(k, None)\n    _memo[k] = 1\n"
    assert _module_state(memo) == {"_memo"}
    assert _module_state("SEEN = set()\ndef f(x):\n    SEEN.add(x)\n") == {"SEEN"}
    assert _module_state("N = 0\ndef f():\n    global N\n    N += 1\n") == {"N"}
    assert _module_state("UNITS = {'s': 1.0}\ndef f(u):\n    return UNITS[u]\n") == set()


def test_the_state_check_sees_an_object_made_at_import_whatever_its_methods_are_called() -> None:
    """The bug the check was written for: one Moves for every agent of the process."""
    moves = (
        "from meshd.core.moves import Moves\n_MOVES = Moves()\ndef f(a, b):\n    return _MOVES.moved(a, b)\n"
    )
    assert _module_state(moves, "meshd.core.assembly") == {"_MOVES"}
    assert _module_state("class Memo:\n    pass\n_M = Memo()\n") == {"_M"}
    assert _module_state("if True:\n    _M, K = object(), 1\n") == {"_M", "K"}
    wrapped = "from types import MappingProxyType\nfrom m import Moves\nT = MappingProxyType({1: Moves()})\n"
    assert _module_state(wrapped) == {"T"}, "a mutable object inside a read-only view is still state"
    assert _module_state("P = compile('1', 'f', 'eval')\n") == {"P"}, "the builtin is not re.compile"
    assert _module_state("F = lambda m=Moves(): m\n") == {"F"}, "a lambda's default is made at import"


def test_the_state_check_accepts_immutable_constants() -> None:
    constants = (
        "import re\nfrom types import MappingProxyType as Proxy\nfrom operator import attrgetter\n"
        "P = re.compile('[0-9]+')\nT = Proxy({'a': frozenset({1})})\nKEY = attrgetter('name')\n"
        "F = (lambda: Moves())\nfrom meshd.core.state import DeviceNames\nNAMES = DeviceNames()\n"
    )
    assert _module_state(constants) == set()


@pytest.mark.parametrize(
    ("source", "memo"),
    [
        ("import functools\n@functools.lru_cache(maxsize=None)\ndef parse(x):\n    return x\n", {"parse"}),
        ("from functools import cache\n@cache\ndef parse(x):\n    return x\n", {"parse"}),
        ("from functools import lru_cache as memo\n@memo\ndef parse(x):\n    return x\n", {"parse"}),
        ("import functools as f\nclass C:\n    @f.cache\n    def m(self):\n        return 1\n", {"m"}),
        ("from functools import cached_property\n@cached_property\ndef f(x):\n    return x\n", {"f"}),
        ("import functools\nparse = functools.cache(len)\n", {"parse"}),
        (
            "from functools import cached_property\nclass C:\n    @cached_property\n    def m(self):\n        return 1\n",
            set(),
        ),
        (
            "from functools import cache\ndef f(x):\n    @cache\n    def g(y):\n        return y\n    return g(x)\n",
            set(),
        ),
    ],
)
def test_the_state_check_sees_a_process_wide_memo(source: str, memo: set[str]) -> None:
    """A functools memo on a module-level function or a method is shared by the process; a cached_property
    (per object) and a memo in a nested function (per call) are not."""
    assert _module_state(source) == memo


@dataclass
class _Plain:
    n: int = 0


@dataclass(frozen=True)
class _Holding:
    items: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Named:
    label: str = ""


class _Carrying(_Named):
    pass


def test_the_frozen_check_sees_a_value_that_could_change() -> None:
    carrying = _Carrying()
    carrying.seen = 1  # type: ignore[attr-defined]  # frozen protects only _Named's fields here
    assert _not_frozen(_Plain()) == "no frozen dataclass"
    assert _not_frozen(_Holding()) == "holds an unhashable (mutable) field"
    assert _not_frozen(carrying) == "carries ['seen'] beyond its fields"
    assert _not_frozen(_Carrying()) == _not_frozen(DeviceNames()) == ""


def test_every_allowed_callee_is_one_the_core_binds_today() -> None:
    """The allow-list is derived from the core: an entry no pure module uses is removed, not kept."""
    allowed = IMMUTABLE_CALLS | CORE_VALUES
    trees = [(module, ast.parse(_source(module))) for module in DECIDING]
    unused = {entry for entry in allowed if not any(_made(t, m, allowed - {entry}) for m, t in trees)}
    assert not unused

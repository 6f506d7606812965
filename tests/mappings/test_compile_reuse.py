"""A mapping compiled again (each stage compiles its mappings) reuses the code compiled for the same generated
source, and still gets functions of its own."""

from __future__ import annotations

from canonical import model
from mappings import compiler
from mappings.engine import compile_for


def test_a_mapping_compiled_twice_maps_alike_with_functions_of_its_own() -> None:
    first, second = compile_for("stripe"), compile_for("stripe")
    run1, run2 = first.plans["charge"][0].run, second.plans["charge"][0].run
    assert run1 is not None and run2 is not None and run1 is not run2
    assert getattr(run1, "__globals__") is not getattr(run2, "__globals__")  # noqa: B009
    assert getattr(run1, "__code__") is getattr(run2, "__code__")  # noqa: B009
    record = {"id": "ch_1", "amount": 1250, "currency": "eur", "created": 1_700_000_000, "status": "succeeded"}
    out1: list[tuple[str, dict[str, object]]] = []
    out2: list[tuple[str, dict[str, object]]] = []
    run1(record, None, "ch_1", 1, None, out1)
    run2(record, None, "ch_1", 1, None, out2)
    assert out1 == out2 and out1[0][1] is not out2[0][1]


def test_code_is_compiled_once_per_source_and_name() -> None:
    src = "def f():\n    return 41 + 1\n"
    code = compiler._code(src, "<test f>")
    assert compiler._code(src, "<test f>") is code
    assert compiler._code(src, "<test g>") is not code
    env: dict[str, object] = {}
    exec(code, env)
    assert env["f"]() == 42  # type: ignore[operator]


def test_field_types_are_a_new_dict_each_time() -> None:
    types = model.field_types(model.Deal)
    types["amount"] = str
    assert model.field_types(model.Deal)["amount"] is not str

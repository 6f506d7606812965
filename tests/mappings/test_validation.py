"""A mapping is validated when it loads: errors name the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mappings.engine import compile_for
from mappings.spec import MappingError, load_mapping

BASE = """\
kind: x
objects:
  Thing:
    entity: deal
    fields:
      name: Name
"""


def check(tmp_path: Path, text: str, match: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=match) as exc:
        compile_for("x", "no-such-kind", path)
    return str(exc.value)


def test_unknown_canonical_field_names_file_and_line(tmp_path: Path) -> None:
    msg = check(tmp_path, BASE + "      stagex: StageName\n", "unknown canonical field 'stagex'")
    assert f"{tmp_path / 'm.yaml'}:7:" in msg


def test_unknown_coercion(tmp_path: Path) -> None:
    msg = check(tmp_path, BASE + "      amount:\n        from: Amount\n        coerce: moneyy\n", "unknown coercion 'moneyy'")
    assert ":9:" in msg


def test_coercion_of_the_wrong_type(tmp_path: Path) -> None:
    check(tmp_path, BASE + "      amount: {from: Amount, coerce: date}\n", "does not produce a money")


def test_missing_required_field(tmp_path: Path) -> None:
    text = "objects:\n  Acc:\n    entity: account\n    fields:\n      domain: Website\n"
    msg = check(tmp_path, text, r"required canonical field account\.name")
    assert ":4:" in msg


def test_unknown_entity_and_keys(tmp_path: Path) -> None:
    check(tmp_path, "objects:\n  T:\n    entity: dael\n    fields: {}\n", "`entity` must be one of")
    check(tmp_path, BASE + "      owner: {from: Name, defualt: x}\n", "unknown key 'defualt'")
    check(tmp_path, BASE + "      owner: {coerce: str}\n", "exactly one of `from`, `args` or `const`")
    check(tmp_path, BASE + "      account_id: {from: A, coerce: ref, entity: nope}\n", "needs `entity:`")
    check(tmp_path, "timezone: Mars/Olympus\n" + BASE, "unknown timezone")
    check(tmp_path, BASE + "      owner: {from: N, pattern: '(('}\n", "bad regular expression")
    check(tmp_path, BASE + "  Thing2: [1]\n", "expected a mapping")


def test_bad_yaml_and_duplicate_keys(tmp_path: Path) -> None:
    check(tmp_path, "objects: [\n", "not valid YAML")
    msg = check(tmp_path, BASE + "      name: Other\n", "duplicate key 'name'")
    assert ":7:" in msg


def test_override_merges_and_removes(tmp_path: Path) -> None:
    over = tmp_path / "o.yaml"
    over.write_text("objects:\n  Opportunity:\n    fields:\n      owner: null\n  Lead: null\n", encoding="utf-8")
    merged = load_mapping("salesforce", over)
    assert "Lead" not in merged["objects"]
    assert "owner" not in merged["objects"]["Opportunity"]["fields"]
    assert "amount" in merged["objects"]["Opportunity"]["fields"]
    # an error in the override names the override file
    over.write_text("objects:\n  Opportunity:\n    fields:\n      colour: Colour__c\n", encoding="utf-8")
    with pytest.raises(MappingError, match=f"{over}:4: .*unknown canonical field 'colour'"):
        compile_for("crm", "salesforce", over)


def test_missing_shipped_mapping_names_the_kind() -> None:
    with pytest.raises(MappingError, match="no shipped mapping for source kind 'nope'"):
        load_mapping("nope")


@pytest.mark.parametrize("content", [
    "root:x:0:0:root:/root:/bin/bash\nsvc:$6$hunter2-hash:19000:0:99999:7:::\n",
    "password: hunter2\napi_key: sk_live_hunter2\n",
    "secret: [unclosed hunter2\n",
    "Name:\tpython\nState:\tS (hunter2)\n",
])
def test_a_mapping_path_at_some_other_file_never_quotes_it(tmp_path: Path, content: str) -> None:
    other = tmp_path / "passwd"
    other.write_text(content)
    with pytest.raises(MappingError) as err:
        load_mapping("salesforce", other)
    assert "hunter2" not in str(err.value) and "/bin/bash" not in str(err.value) and "python" not in str(err.value)
    assert "not a mapping file" in str(err.value)
    binary = tmp_path / "blob"
    binary.write_bytes(b"\x89PNG\x00\xff hunter2")
    with pytest.raises(MappingError, match="not a mapping file") as err:
        load_mapping("salesforce", binary)
    assert "hunter2" not in str(err.value)


def test_a_mapping_in_another_encoding_says_so_and_one_in_utf16_or_with_a_bom_loads(tmp_path: Path) -> None:
    """A 简道云 mapping with Chinese comments saved by a Chinese Windows editor as 'ANSI' (GBK): named as not UTF-8
    with its line, not called "not a mapping file" (fails on 0ee0bb2); UTF-16 and a UTF-8 BOM, as Notepad writes
    them, load as the same mapping."""
    text = "# 订单映射\nobjects:\n  Opportunity:\n    entity: deal\n    fields:\n      amount: Amount\n"
    gbk = tmp_path / "gbk.yaml"
    gbk.write_bytes(text.encode("gbk"))
    with pytest.raises(MappingError, match=r"gbk\.yaml:1: not UTF-8 text .*save the file as UTF-8"):
        load_mapping("salesforce", gbk)
    loaded = []
    for name, data in (("utf8.yaml", text.encode()), ("bom.yaml", b"\xef\xbb\xbf" + text.encode()),
                       ("utf16.yaml", text.encode("utf-16"))):
        (tmp_path / name).write_bytes(data)
        loaded.append(load_mapping("salesforce", tmp_path / name)["objects"]["Opportunity"]["fields"]["amount"])
    assert loaded == ["Amount"] * 3

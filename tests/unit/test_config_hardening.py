"""Hostile configuration documents (issue 12, "Configuration"): each is refused with one line per
problem naming the file and line, quickly and in little memory; nothing echoes a password."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from burst.config import MAX_ERROR_LINES, load_config, read_yaml
from burst.errors import ConfigError

# The 342-byte "billion laughs" of the issue: 9 levels of 9 aliases, ~387 million strings expanded.
BOMB = "".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    + [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
)


def _refused(tmp_path: Path, text: str | bytes) -> ConfigError:
    p = tmp_path / "burst.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as info:
        load_config(p)
    return info.value


def _lines(e: ConfigError) -> list[str]:
    return list(getattr(e, "lines", None) or [str(e)])


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path: Path) -> None:
    e = _refused(tmp_path, "budget:\n  month_usd: 500\ncluster: x\nbudget:\n  day_usd: 10\n")
    assert str(e).startswith(f"{tmp_path / 'burst.yaml'}:4:")
    assert "duplicate key 'budget'" in str(e) and "lines 1 and 4" in str(e)
    nested = _refused(tmp_path, "policy:\n  max_instances: 5\n  max_instances: 6\n")
    assert "lines 2 and 3" in str(nested)


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    p = tmp_path / "burst.yaml"
    p.write_text("x-base: &b {month_usd: 5}\n")
    data = read_yaml(p)
    assert data == {"x-base": {"month_usd": 5}}
    p.write_text("budget:\n  <<: {month_usd: 5, day_usd: 1}\n  day_usd: 2\n")
    assert load_config(p).budget.day_usd == 2  # an explicit key overrides a merged one


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "\ufeff"])
def test_an_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    e = _refused(tmp_path, text)
    assert "is empty" in str(e)


def test_the_342_byte_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    assert len(BOMB.encode()) == 342
    tracemalloc.start()
    t0 = time.process_time()
    try:
        e = _refused(tmp_path, BOMB)
        took = time.process_time() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "aliases expand to more than" in str(e)
    assert took < 1.0 and peak < 10 * 2**20, (took, peak)


def test_a_bomb_as_a_value_and_a_10x10_bomb_are_refused(tmp_path: Path) -> None:
    ten = "a0: &a0 [" + ",".join(["lol"] * 10) + "]\n" + "".join(
        f"a{k}: &a{k} [{','.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 10)
    ) + "policy: {max_instances: *a9}\n"
    assert "aliases expand" in str(_refused(tmp_path, ten))
    assert "aliases expand" in str(_refused(tmp_path, BOMB.replace("i: &i", "cluster: &i")))


def test_an_alias_cycle_is_refused(tmp_path: Path) -> None:
    assert "cycle" in str(_refused(tmp_path, "a: &a [*a]\n"))


@pytest.mark.parametrize(
    "text",
    ["policy: " + "[" * 5000 + "]" * 5000 + "\n", "policy: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
     "policy:\n" + "".join(" " * i + "- \n" for i in range(100))],
    ids=["flow-list", "flow-map", "block-list"],
)
def test_deep_nesting_is_a_clean_error_not_a_recursion_error(tmp_path: Path, text: str) -> None:
    e = _refused(tmp_path, text)
    assert "nested deeper than" in str(e) and str(e).count("\n") == 0


def test_deep_nesting_through_aliases_is_refused(tmp_path: Path) -> None:
    deep = "a0: &a0 [1]\n" + "".join(f"a{k}: &a{k} [*a{k - 1}]\n" for k in range(1, 60))
    assert "nested deeper than" in str(_refused(tmp_path, deep))


def test_input_size_is_bounded(tmp_path: Path) -> None:
    e = _refused(tmp_path, "".join(f"k{i}: {i}\n" for i in range(100_000)))
    assert "larger than" in str(e)


def test_the_error_list_is_capped_with_a_count(tmp_path: Path) -> None:
    e = _refused(tmp_path, "".join(f"k{i}: {i}\n" for i in range(35)))
    lines = _lines(e)
    assert len(lines) == MAX_ERROR_LINES + 1
    assert lines[-1].endswith(f"and {35 - MAX_ERROR_LINES} more problem(s)")


def test_expanded_values_are_never_printed_whole(tmp_path: Path) -> None:
    # A bomb under the expansion limit (6,561 strings), and a 100 kB string, as a value.
    small_bomb = "".join(
        [f'a: &a ["{"x" * 30}","lol","lol"]\n'] + [f"{c}: &{c} [*{p},*{p},*{p}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)]
    ) + "cluster: *h\n"
    for text in (small_bomb.replace(": &", ": &").replace("cluster: *h", "x-y: 1\ncluster: *h"),
                 "cluster: '" + "y" * 100_000 + "'\n", "policy:\n  max_instances: [" + ",".join(["1"] * 5000) + "]\n"):
        e = _refused(tmp_path, text)
        assert all(len(line) < 500 for line in _lines(e)), [len(line) for line in _lines(e)]


@pytest.mark.parametrize(
    "url", ["mysql://admin:s3cret@db.internal/burst", "postgresql+psycopg://burst:s3cret@/burst", "s3cret-not-a-url", "burst:s3cret@db.internal/burst"]
)
def test_a_bad_database_url_is_never_echoed_with_its_password(tmp_path: Path, url: str) -> None:
    e = _refused(tmp_path, f"database_url: {url}\n")
    assert "s3cret" not in str(e) and "database_url" in str(e)
    if url.startswith("mysql"):
        assert "SQLite" in str(e) and "PostgreSQL" in str(e) and "mysql" in str(e)


@pytest.mark.parametrize(
    "text", ["policy: {max_instances: !!int x}\n", "cluster: !!float nope\n", "x: 2026-13-45\n", "x: !!binary '!!'\n",
             "cluster: \x07bell\n", "k\u2028: 1\n", "? |\n  multi\n  line\n: v\n", "!!python/object/apply:os.system [true]\n"],
)
def test_odd_yaml_is_one_line_naming_the_file(tmp_path: Path, text: str) -> None:
    e = _refused(tmp_path, text)
    for line in _lines(e):
        assert line.startswith(str(tmp_path / "burst.yaml")) and "\n" not in line, line


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "burst.yaml"
    p.write_bytes(b"\xef\xbb\xbfcluster: lab\n")
    assert load_config(p).cluster == "lab"

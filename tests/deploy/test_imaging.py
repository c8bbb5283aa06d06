"""The image test's helpers: the Debian mirror is read from apt's sources at run time (both file
formats), never written into the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.imaging import debian_mirror


def test_deb822_sources_give_the_main_archive_not_security(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment: here\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_one_line_sources_list_with_options(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main  # trailing\n"
    )
    assert debian_mirror(tmp_path) == "http://one.example/debian"


def test_no_source_for_the_suite_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://one.example/debian trixie main\n")
    with pytest.raises(LookupError, match="no 'deb' source for suite 'bookworm'"):
        debian_mirror(tmp_path)

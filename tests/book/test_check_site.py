"""The browser check's own rules (scripts/check_site.py) on a tiny site: internal links, anchors, alt text."""

from __future__ import annotations

from pathlib import Path

from conftest import script_module

check_site = script_module("scripts/check_site.py")

BASE = "http://127.0.0.1:8000/"


def _site(tmp_path: Path) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "index.html").write_text('<h1 id="top">Home</h1><section id="findings"></section>')
    (tmp_path / "book" / "page.html").write_text("<p id='intro'>A page</p>")
    return tmp_path


def test_links_resolve_to_files_and_anchors(tmp_path: Path) -> None:
    site = _site(tmp_path)
    anchors = check_site.anchors_of(site)
    assert anchors == {"index.html": {"top", "findings"}, "book/page.html": {"intro"}}
    for good in (BASE, BASE + "index.html#findings", BASE + "book/page.html#intro", BASE + "book/page.html"):
        assert check_site.broken_link(good, BASE, site, anchors) == "", good
    assert "missing file" in check_site.broken_link(BASE + "book/gone.html", BASE, site, anchors)
    assert "missing anchor" in check_site.broken_link(BASE + "book/page.html#nowhere", BASE, site, anchors)


def test_alt_text_must_describe_the_figure() -> None:
    assert check_site.described("Line plot of the KL divergence against the coefficient.")
    assert not check_site.described("")
    assert not check_site.described("../_images/4c0c2caa9e3f.png")  # what myst-nb writes without metadata

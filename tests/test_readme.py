"""The README is the front page (issue 18): short, its links resolve, and every guide page is in the site's nav.

The long sections live under ``docs/guide/`` (rendered by ``make docs``, and readable on a code host as they are);
the README links to those sources, so a moved or renamed page must fail here, not in a reader's browser.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


def test_readme_is_a_short_front_page() -> None:
    assert len(README.splitlines()) <= 160
    for command in ("make reproduce", "make test", "make docs"):
        assert command in README


def test_readme_links_and_images_resolve() -> None:
    targets = [t for t in LINK.findall(README) if "://" not in t]
    assert any(t.startswith("docs/guide/") for t in targets)
    assert any(t.startswith("docs/figures/") for t in targets)
    for target in targets:
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_every_guide_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs" / "guide").glob("*.md")):
        assert f"guide/{page.name}" in nav, f"docs/guide/{page.name} is missing from the nav of mkdocs.yml"

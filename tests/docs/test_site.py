"""The documentation site: built strictly once per session, then opened in headless Chromium.

Asserts that one API page and one claim page render their math (MathJax output present, no raw TeX such as
``\\frac`` or ``$$`` left in the visible text) and writes screenshots under ``results/`` for inspection.  Skipped
when mkdocs (the ``docs`` extra) or Chromium (Debian's ``chromium``) is missing, unless ``MVM_REQUIRE_DOCS=1``
(set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import functools
import html
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.docs


def _missing() -> str | None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mathjax"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return f"{module} is not installed (pip install -e '.[docs]', or make docs)"
    if _chromium() is None:
        return "chromium is not installed (apt-get install chromium)"
    return None


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    reason = _missing()
    if reason is not None:
        if os.environ.get("MVM_REQUIRE_DOCS") == "1":
            pytest.fail(f"MVM_REQUIRE_DOCS=1 but {reason}")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("docs")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "MVM_TUTORIAL_OUT": str(out / "tutorials"),
        "NO_MKDOCS_2_WARNING": "1",
    }
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    print(f"docs build {time.perf_counter() - start:.1f} s")
    handler = functools.partial(QuietHandler, directory=str(out / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", out / "site"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the name of the base class parameter
        pass


def _chrome(*args: str) -> str:
    command = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=20000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style|mjx-assistive-mml)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def _check_rendered(url: str, screenshot: Path, height: int = 1800) -> tuple[int, str]:
    dom = _chrome("--dump-dom", url)
    rendered = dom.count("<mjx-container")
    text = _visible_text(dom)
    for raw in (r"\frac", "$$", r"\(", r"\[", ":math:", ".. math::"):
        assert raw not in text, (
            f"raw {raw!r} left in the visible text of {url}: ...{text[text.find(raw) - 200 :][:400]}"
        )
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    _chrome(f"--window-size=1280,{height}", "--hide-scrollbars", f"--screenshot={screenshot}", url)
    from PIL import Image

    with Image.open(screenshot) as image:  # a blank page (nothing painted) has one or two colours
        assert len(image.convert("L").getcolors(1 << 16) or []) > 50, f"the screenshot of {url} is blank"
    return rendered, dom


def test_api_page_renders_math(site) -> None:
    base, folder = site
    source = (folder / "reference" / "theory" / "index.html").read_text(encoding="utf-8")
    expected = source.count('class="arithmatex"')
    assert expected > 100, "the theory reference lost its docstrings' math"
    assert "averaged_lr_schedule" in source and "MomentumParams" in source
    # tall enough to show the first members below the module table
    rendered, _ = _check_rendered(f"{base}/reference/theory/", ROOT / "results" / "docs_screenshot_api.png", 5000)
    assert rendered >= expected, f"MathJax rendered {rendered} of {expected} formulas"


def test_claim_page_renders_math_and_results(site) -> None:
    base, folder = site
    source = (folder / "claims" / "theorem_3_5" / "index.html").read_text(encoding="utf-8")
    assert "verification_quick.json" in source and "PASS" in source
    assert "sgdm_beta_ignored" in source  # the mutants that must break the claim
    rendered, _ = _check_rendered(f"{base}/claims/theorem_3_5/", ROOT / "results" / "docs_screenshot.png")
    assert rendered >= source.count('class="arithmatex"') > 5


def test_generated_pages(site) -> None:
    _, folder = site
    cli = (folder / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("derive", "verify", "figures", "train", "bounds", "sweep"):
        assert f"mvm {command} --help" in cli
    for tutorial in ("regenerate_a_figure", "check_your_variant", "real_networks"):
        page = (folder / "tutorials" / tutorial / "index.html").read_text(encoding="utf-8")
        assert "output" in page and "Not executed" not in page
    assert (folder / "assets" / "mathjax" / "tex-mml-chtml.js").is_file()


@pytest.mark.parametrize("package", ["theory", "empirical", "proofs_check", "paper_figures"])
def test_every_public_name_is_documented(site, package: str) -> None:
    """Each name of ``package.__all__`` has a heading on its reference page (directly, or where it is defined)."""
    import importlib

    _, folder = site
    page = (folder / "reference" / package / "index.html").read_text(encoding="utf-8")
    names = importlib.import_module(package).__all__
    missing = [
        n for n in names if f'id="{package}.{n}"' not in page and not re.search(rf'id="{package}\.[\w.]*\.{n}"', page)
    ]
    assert not missing, f"{package}: no reference entry for {missing}"

"""Check the built book in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

    python scripts/check_site.py [_build/html]

The site is served from a local http.server on a free port. Checks:

1. every page loads with no console error and no uncaught JavaScript exception, and every file it requests from
   the site exists;
2. every image served by the site is really there (loaded, naturalWidth > 0), and every notebook page shows at
   least one figure;
3. every notebook page links to Colab, and each Colab link opens that page's own .ipynb in the repository named
   in _config.yml (repository.url, branch);
4. the search page finds results for "cache";
5. the light/dark switch of the theme is there;
6. every page also loads at a phone's width (390 px) without scrolling sideways (wide tables and outputs scroll
   inside their own boxes);
7. every link to the site itself leads to a page that exists, and its #anchor to an element of that page;
8. every figure has alt text that describes it (not its file name);
9. the landing page opens with the findings box.

A screenshot of every page at both widths is written to _build/screenshots/ (desktop: the whole page; phone: the
first screen) for a person to look over.

Requests to other hosts are blocked, so the check runs offline and the same everywhere; a page may only refer to
the external resources in ALLOWED_EXTERNAL (they work online and are harmless offline). Exit status 0 when every
check passes, 1 otherwise. Without Chromium or Playwright the check is skipped (exit 0) with a message, except
under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# External resources a page may refer to; offline they are blocked, and errors caused by blocking them are not
# counted. The Colab badge in each notebook, and MathJax for pages with formulas.
ALLOWED_EXTERNAL = (
    "https://colab.research.google.com/assets/colab-badge.svg",
    "https://cdn.jsdelivr.net/npm/mathjax@3/",
)
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "jupyter_execute"}
TIMEOUT_MS = 30_000
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
SCREENSHOTS = ROOT / "_build" / "screenshots"
FINDINGS_TITLE = "Findings at a glance"


def expected_colab_url(page: str) -> str:
    """The Colab URL of a notebook page ("notebooks/03_x.html"), from _config.yml's repository settings."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository = config["repository"]
    owner_repo = urlsplit(repository["url"]).path.strip("/")
    book_path = str(repository.get("path_to_book") or "").strip("/.")
    notebook = str(Path(book_path, page).with_suffix(".ipynb"))
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{owner_repo}/blob/{repository.get('branch', 'main')}/{notebook}"


def pages_of(site: Path) -> list[str]:
    """The site's HTML pages, relative to its root."""
    return sorted(
        str(path.relative_to(site)) for path in site.rglob("*.html")
        if not SKIP_DIRS & set(path.relative_to(site).parts[:-1])
    )


def notebook_pages(site: Path) -> list[str]:
    """HTML pages built from notebooks: those with a matching .ipynb in the repository."""
    return [page for page in pages_of(site) if (ROOT / Path(page).with_suffix(".ipynb")).is_file()]


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve the site on 127.0.0.1 at a free port, quietly, in a background thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # noqa: D401 - silence the access log
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


IMAGES_JS = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return images.map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
                             alt: img.getAttribute("alt") || ""}));
}"""
# How far the page itself scrolls sideways (0 when everything wide scrolls inside its own box).
OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"
ID_PATTERN = re.compile(r"""\bid=["']([^"']+)["']""")


def anchors_of(site: Path) -> dict[str, set[str]]:
    """The ids of every HTML file of the site, by path relative to its root: the anchors a link may name."""
    return {str(path.relative_to(site)): set(ID_PATTERN.findall(path.read_text(encoding="utf-8", errors="replace")))
            for path in site.rglob("*.html")}


def broken_link(href: str, base: str, site: Path, anchors: dict[str, set[str]]) -> str:
    """Why a link to the site itself leads nowhere ("" when it resolves): a missing file or a missing anchor."""
    parts = urlsplit(href)
    target = unquote(parts.path[len(urlsplit(base).path):]) or "index.html"
    if target.endswith("/"):
        target += "index.html"
    if not (site / target).is_file():
        return f"link to a missing file: {target}"
    if parts.fragment and target.endswith(".html") and unquote(parts.fragment) not in anchors.get(target, set()):
        return f"link to a missing anchor: {target}#{parts.fragment}"
    return ""


def described(alt: str) -> bool:
    """Whether an image's alt text describes it: not empty, not the image's own file name or path."""
    return bool(alt.strip()) and not re.search(r"\.(png|jpe?g|svg|gif)$", alt.strip(), re.IGNORECASE)


class SiteChecker:
    def __init__(self, context, base: str, site: Path):
        self.context, self.base, self.site = context, base, site
        self.anchors = anchors_of(site)
        self.problems: list[str] = []
        self.blocked: set[str] = set()

    def local(self, url: str) -> bool:
        return url.startswith(self.base) or url.startswith(("data:", "blob:", "about:"))

    def route(self, route) -> None:
        """Serve the site, block everything else (offline and reproducible)."""
        url = route.request.url
        if self.local(url):
            route.continue_()
        else:
            self.blocked.add(url)
            route.abort()

    def open(self, page: str, query: str = ""):
        """Load a page and record its console errors, exceptions and missing files as problems."""
        problems: list[str] = []
        tab = self.context.new_page()

        def on_console(message):
            if message.type != "error":
                return
            source = (message.location or {}).get("url", "")
            if source and not self.local(source) and source.startswith(ALLOWED_EXTERNAL):
                return  # an allowed external resource, blocked because the check runs offline
            problems.append(f"console error: {message.text} ({source or 'page'})")

        def on_response(response):
            if self.local(response.url) and response.status >= 400:
                problems.append(f"HTTP {response.status} for {response.url[len(self.base) - 1:]}")

        tab.on("console", on_console)
        tab.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
        tab.on("response", on_response)
        tab.goto(self.base + page + query, wait_until="load", timeout=TIMEOUT_MS)
        try:
            tab.wait_for_load_state("networkidle", timeout=5_000)
        except Exception:  # a page that keeps polling still counts as loaded
            pass
        return tab, problems

    def check_page(self, page: str, notebook: bool) -> None:
        tab, problems = self.open(page)
        tab.set_viewport_size(VIEWPORTS["desktop"])
        images = tab.evaluate(IMAGES_JS)
        local_images = [image for image in images if self.local(image["src"])]
        problems += [f"image missing: {image['src'][len(self.base) - 1:]}" for image in local_images if not image["ok"]]
        figures = [image for image in local_images if image["ok"] and "/_images/" in image["src"]]
        problems += [f"figure without alt text: {image['src'][len(self.base) - 1:]} (alt {image['alt']!r})"
                     for image in figures if not described(image["alt"])]
        links = tab.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        problems += sorted({reason for link in links if link.startswith(self.base)
                            if (reason := broken_link(link, self.base, self.site, self.anchors))})
        note = f"{len(figures)} figure(s)"
        if notebook:
            if not figures:
                problems.append("no figure: a notebook page shows the figures of its run (from _images/)")
            expected = expected_colab_url(page)
            colab = tab.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
            if not colab:
                problems.append("no Colab link")
            problems += [f"Colab link {link} should be {expected}" for link in colab if link != expected]
            note += f", {len(colab)} Colab link(s)"
        if page == "index.html":
            if not tab.query_selector(".theme-switch-button"):
                problems.append("no light/dark switch (.theme-switch-button)")
            titles = tab.eval_on_selector_all(".admonition .admonition-title", "els => els.map(e => e.textContent)")
            if not any(FINDINGS_TITLE in title for title in titles[:1]):
                problems.append(f"the landing page does not open with the findings box ({FINDINGS_TITLE!r})")
        self.screenshot(tab, page, "desktop", full_page=True)
        tab.set_viewport_size(VIEWPORTS["phone"])
        tab.wait_for_timeout(200)  # the theme re-lays the page out for the narrow screen
        overflow = tab.evaluate(OVERFLOW_JS)
        if overflow > 1:
            problems.append(f"at phone width ({VIEWPORTS['phone']['width']} px) the page scrolls sideways by "
                            f"{overflow} px")
        self.screenshot(tab, page, "phone", full_page=False)
        tab.close()
        self.report(page, problems, note + f", {len(links)} link(s)")

    def screenshot(self, tab, page: str, width: str, full_page: bool) -> None:
        """Save what the page looks like, for a person to review (JPEG: the long notebook pages stay small)."""
        path = SCREENSHOTS / width / (page.replace("/", "__").removesuffix(".html") + ".jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(path), full_page=full_page, type="jpeg", quality=60)

    def check_search(self) -> None:
        tab, problems = self.open("search.html", "?q=cache")
        try:
            tab.wait_for_function(
                "document.querySelectorAll('#search-results ul.search li').length > 0", timeout=TIMEOUT_MS
            )
            hits = tab.eval_on_selector_all("#search-results ul.search li", "els => els.length")
        except Exception:
            hits = 0
            problems.append("no search results for 'cache'")
        tab.close()
        self.report("search.html?q=cache", problems, f"{hits} result(s)")

    def report(self, name: str, problems: list[str], note: str) -> None:
        print(f"  {'ok  ' if not problems else 'FAIL'} {name} ({note})")
        for problem in problems:
            print(f"         {problem}")
        self.problems += [f"{name}: {problem}" for problem in problems]


def browser_missing(reason: str) -> int:
    if os.environ.get("CI") == "true":
        print(f"check_site: FAILED: {reason} (a browser is required under CI)")
        return 1
    print(f"check_site: SKIPPED: {reason}. Install it (as root: apt-get install chromium; pip install playwright)"
          " to check the built site in a browser.")
    return 0


def main(argv: list[str]) -> int:
    site = Path(argv[1] if len(argv) > 1 else ROOT / "_build" / "html").resolve()
    if not (site / "index.html").is_file():
        print(f"check_site: FAILED: no built site at {site} (run `make book` first)")
        return 1
    if not Path(CHROMIUM).is_file():
        return browser_missing(f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return browser_missing("the Python package playwright is not installed")

    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # only this build's pages
    pages, notebooks = pages_of(site), set(notebook_pages(site))
    server, base = serve(site)
    print(f"check_site: {len(pages)} pages ({len(notebooks)} notebooks) of {site}, served at {base}")
    try:
        with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="check-site-") as profile:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            checker = SiteChecker(context, base, site)
            context.route("**/*", checker.route)
            for page in pages:
                checker.check_page(page, page in notebooks)
            checker.check_search()
            context.close()
    finally:
        server.shutdown()
    if not notebooks:
        checker.problems.append("no notebook pages found")
    allowed = sorted(url for url in checker.blocked if url.startswith(ALLOWED_EXTERNAL))
    others = sorted(url for url in checker.blocked if not url.startswith(ALLOWED_EXTERNAL))
    if allowed:
        print(f"  note: {len(allowed)} allowed external resource(s) blocked (offline check): {', '.join(allowed)}")
    checker.problems += [f"refers to an external resource not in ALLOWED_EXTERNAL: {url}" for url in others]
    if checker.problems:
        print(f"check_site: FAILED with {len(checker.problems)} problem(s):")
        for problem in checker.problems:
            print(f"  - {problem}")
        return 1
    print(f"check_site: OK ({len(pages)} pages at desktop and phone width, {len(notebooks)} notebook pages, every "
          f"internal link and figure checked, search works; screenshots in {SCREENSHOTS.relative_to(ROOT)}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

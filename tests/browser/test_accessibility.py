"""Every console page (CONTRACTS §10) at 1280 px and 390 px: named controls, no sideways scrolling, and
status never carried by colour alone. Each page is loaded once per width and audited in the browser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, PAGES, PHONE, playwright_sync_api, screenshot, signed_in_page
from tests.support.server import ServerProcess

expect = playwright_sync_api().expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SIGNED_IN_PAGES = [name for name in PAGES if name != "login"]

# What a screen reader gets from the DOM: text outside aria-hidden parts, and each control's name from
# aria-labelledby, aria-label, its <label>s, title, or (a button) its own text.
AUDIT = """() => {
  const spoken = (el) => {
    const copy = el.cloneNode(true);
    copy.querySelectorAll('[aria-hidden="true"]').forEach((hidden) => hidden.remove());
    return copy.textContent.replace(/\\s+/g, " ").trim();
  };
  const labelledBy = (el) => (el.getAttribute("aria-labelledby") || "").split(/\\s+/)
    .map((id) => document.getElementById(id)).filter(Boolean).map(spoken).join(" ").trim();
  const nameOf = (el) => labelledBy(el)
    || (el.getAttribute("aria-label") || "").trim()
    || [...(el.labels || [])].map(spoken).join(" ").trim()
    || (el.getAttribute("title") || "").trim()
    || (el.tagName === "BUTTON" ? spoken(el) : "");
  const snippet = (el) => el.outerHTML.slice(0, 200);
  const colourCoded = (el) => [...el.classList].some((c) => /^(st|sev|status|sig)-/.test(c));
  const indicators = [...document.querySelectorAll("[class]")]
    .filter((el) => el.matches(".badge, .chip, .live") || colourCoded(el));
  return {
    unnamed: [...document.querySelectorAll('input:not([type="hidden"]), select, textarea, button')]
      .filter((el) => !nameOf(el)).map(snippet),
    overflow: document.scrollingElement.scrollWidth - window.innerWidth,
    indicators: indicators.length,
    colour_only: indicators
      .filter((el) => !(el.getAttribute("aria-label") || "").trim() && !spoken(el)).map(snippet),
  };
}"""


class PageAudits:
    """One signed-in browser page at one width; each console page is loaded and audited once."""

    def __init__(self, page: Any, server: ServerProcess, width: int, paths: dict[str, str]) -> None:
        self.page = page
        self.server = server
        self.width = width
        self.paths = paths
        self.found: dict[str, dict[str, Any]] = {}

    def of(self, name: str) -> dict[str, Any]:
        if name not in self.found:
            self.page.goto(self.server.url + self.paths[name])
            expect(self.page.locator("main h1").first).to_be_visible()
            screenshot(self.page, f"{name}-{self.width}")
            self.found[name] = self.page.evaluate(AUDIT)
        return self.found[name]


@pytest.fixture(scope="module", params=[DESKTOP, PHONE], ids=lambda viewport: f"{viewport[0]}px")
def audits(
    request: pytest.FixtureRequest, browser: Any, server: ServerProcess, login_url: str, paths: dict[str, str]
) -> Iterator[PageAudits]:
    with signed_in_page(browser, server, login_url, request.param) as page:
        yield PageAudits(page, server, request.param[0], paths)


@pytest.mark.parametrize("name", PAGES)
def test_every_control_has_an_accessible_name(audits: PageAudits, name: str) -> None:
    unnamed = audits.of(name)["unnamed"]
    assert not unnamed, f"{name} at {audits.width} px has controls without a name: {unnamed}"


@pytest.mark.parametrize("name", PAGES)
def test_the_page_fits_the_width_without_horizontal_scrolling(audits: PageAudits, name: str) -> None:
    overflow = audits.of(name)["overflow"]
    assert overflow <= 0, f"{name} overflows a {audits.width} px screen by {overflow} px"


@pytest.mark.parametrize("name", SIGNED_IN_PAGES)
def test_status_and_severity_are_never_colour_alone(audits: PageAudits, name: str) -> None:
    found = audits.of(name)
    assert found["indicators"], f"{name} shows no status indicator (the status chip is on every page)"
    assert not found["colour_only"], (
        f"{name} at {audits.width} px has colour-coded indicators without text: {found['colour_only']}"
    )

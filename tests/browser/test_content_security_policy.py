"""Every console page under the Content-Security-Policy in a real browser: the policy is enforced (an
injected inline script is refused and reported), and no page breaks it or logs an error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, PAGES, playwright_sync_api, signed_in_page
from tests.support.server import ServerProcess

expect = playwright_sync_api().expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

# Runs before the page's own scripts on every navigation (Playwright's init scripts are not subject to CSP).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
});
"""
INJECT_INLINE_SCRIPT = """() => {
  const script = document.createElement("script");
  script.textContent = "window.__inlineRan = true;";
  document.body.appendChild(script);
  return window.__inlineRan === true;
}"""
# The only error a page may log: the 404 page's own status.
EXPECTED_ERRORS = {"not-found": "status of 404"}


def test_the_policy_refuses_an_injected_inline_script(
    browser: Any, server: ServerProcess, login_url: str
) -> None:
    with signed_in_page(browser, server, login_url, DESKTOP) as page:
        page.add_init_script(RECORD_VIOLATIONS)
        page.goto(f"{server.url}/plans")
        assert page.evaluate(INJECT_INLINE_SCRIPT) is False
        violations = page.wait_for_function("() => window.__cspViolations.length > 0").json_value()
        assert violations and "script-src" in page.evaluate("window.__cspViolations")[0]


def test_no_console_page_breaks_the_policy_or_logs_an_error(
    browser: Any, server: ServerProcess, login_url: str, paths: dict[str, str]
) -> None:
    with signed_in_page(browser, server, login_url, DESKTOP) as page:
        page.add_init_script(RECORD_VIOLATIONS)
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        found: dict[str, list[str]] = {}
        for name in PAGES:
            errors.clear()
            response = page.goto(server.url + paths[name])
            assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
            expect(page.locator("main h1").first).to_be_visible()
            if name != "login":  # the console's script ran: it connected the live feed
                expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
            violations = page.evaluate("window.__cspViolations")
            unexpected = [e for e in errors if EXPECTED_ERRORS.get(name, "\0") not in e]
            if violations or unexpected:
                found[name] = violations + unexpected
        assert not found, f"pages that break the CSP or log errors: {found}"

"""The console's Routes page, the API and both ways of `storyloom routes test` (asking the server, and
evaluating the same config file) reach the same receivers in the same order, against a real server whose
config turns the demo inbox on beside the configured receivers."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, playwright_sync_api, signed_in_page
from tests.integration.test_route_test_parity import CASES, CONFIG
from tests.support.server import ServerProcess

expect = playwright_sync_api().expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SECRET = "whsec_" + base64.b64encode(b"route-test-parity-secret-0123456").decode()


@pytest.fixture(scope="module")
def parity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("route-parity")
    proc = ServerProcess(data_dir, config=CONFIG, env={"PARITY_OPS_SECRET": SECRET}).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_the_routes_page_the_api_and_the_cli_answer_alike(browser: Any, parity_server: ServerProcess) -> None:
    server = parity_server
    viewer = server.create_token("viewer", "route-tester")
    assert server.config_path is not None
    with signed_in_page(browser, server, f"{server.url}/login?token={viewer}", DESKTOP) as page:
        page.goto(f"{server.url}/routes")
        for labels, expected in CASES:
            pairs = [f"{name}={value}" for name, value in labels.items()]
            api = server.post("/api/alert-routes/test", {"labels": labels}).json()["receivers"]

            page.get_by_label(re.compile("Labels, one")).fill("\n".join(pairs))
            page.get_by_role("button", name="Test routing").click()
            tags = page.locator("#route-test-result .tag")
            expect(tags).to_have_text(expected)  # waits for this answer, in this order

            asked = server.cli("routes", "test", *pairs, token=viewer)
            local = server.cli("routes", "test", "--config", str(server.config_path), *pairs)
            assert asked.returncode == 0 and local.returncode == 0, asked.stderr + local.stderr
            assert api == tags.all_inner_texts() == asked.stdout.split() == local.stdout.split() == expected

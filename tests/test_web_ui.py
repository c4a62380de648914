"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a live
`zimo serve` app with a trained project. Screenshots go to a temporary folder, or to
benchmarks/results/ui/ with ZIMO_UPDATE_SCREENSHOTS=1 (so a test run leaves the tree clean)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from serve_fixtures import LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = (
    Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "ui"
    if os.environ.get("ZIMO_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "zimo-ui-screenshots"
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def server(trained_project, tmp_path_factory):
    from zimo.serve.cli import gateway_app
    from zimo.serve.config import ServeConfig

    home = tmp_path_factory.mktemp("serve-home")
    cfg = ServeConfig.model_validate(
        {
            "keys_db": str(home / "keys.sqlite"),
            "log": {"path": str(home / "requests.sqlite")},
            "watch_s": None,
            "embeddings": False,
        }
    )
    with LiveServer(gateway_app(cfg, projects=[trained_project])) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_pages_build_playground_and_keys(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Projects: the DAG with every stage fresh, the metrics table and the report link.
    page.goto(server.url + "/ui")
    page.wait_for_selector("[data-project='tiny-sms'] .stage")
    stages = page.locator("[data-project='tiny-sms'] .stage")
    assert stages.count() == 5
    assert page.locator("[data-stage='train'] .tag").inner_text() == "fresh"
    assert "finetuned" in page.locator("[data-project='tiny-sms'] table").inner_text()
    _shot(page, "projects")
    # Build: nothing changed, so it finishes and the stages stay fresh.
    page.click("button.build")
    page.wait_for_selector("button.build:not([disabled])", timeout=120_000)
    assert page.locator("[data-stage='eval'] .tag").inner_text() == "fresh"

    # The evaluation report opens.
    page.click("text=evaluation report")
    page.wait_for_selector("h1")
    assert "evaluation report" in page.locator("h1").inner_text()
    page.go_back()

    # Datasets: split counts by origin, and the sample search.
    page.goto(server.url + "/ui/datasets")
    page.wait_for_selector("#origins table")
    assert "human" in page.locator("#origins").inner_text()
    page.fill("#sample-q", "spam")
    page.click("#sample-form button")
    page.wait_for_selector("#samples table")
    assert "matching rows" in page.locator("#samples").inner_text()
    _shot(page, "datasets")

    # Runs: the loss curve is drawn from the training log.
    page.goto(server.url + "/ui/runs")
    page.wait_for_selector("#loss-chart path")
    assert "stage" in page.locator("#runs").inner_text()
    _shot(page, "runs")

    # Models: the playground classifies an SMS through /v1/chat/completions.
    page.goto(server.url + "/ui/models")
    page.wait_for_selector("#play-model option", state="attached")
    page.select_option("#play-model", "tiny-sms")
    page.fill("#play-input", "WINNER!! You have won a £1000 prize. Call 09061701461 to claim now")
    page.click("#play-form button")
    answer = page.wait_for_selector("[data-testid=answer]", timeout=120_000)
    assert answer.inner_text().strip() in ("ham", "spam")
    _shot(page, "models")

    # Gateway: the playground request is in the log.
    page.goto(server.url + "/ui/gateway")
    page.wait_for_selector("[data-metric=requests]")
    assert int(page.locator("[data-metric=requests]").inner_text()) >= 1
    assert "tiny-sms" in page.locator("#gw-recent").inner_text()
    _shot(page, "gateway")

    # Keys: create an admin key; then the API needs it; log in and revoke a second key.
    page.goto(server.url + "/ui/keys")
    page.wait_for_selector("#keys")
    page.fill("#key-name", "admin")
    page.check("#key-admin")
    page.click("#key-form button")
    admin = page.wait_for_selector("[data-testid=new-key]").inner_text()
    assert httpx.get(server.url + "/ui/api/keys").status_code == 401
    page.goto(server.url + "/ui/keys")  # the server now has keys: the page asks for one
    page.wait_for_selector("#notice:has-text('admin API key')")
    page.fill("#admin-key", admin)
    page.click("#login button")
    page.wait_for_selector("#keys table")
    page.fill("#key-name", "app")
    page.click("#key-form button")
    app_key = page.wait_for_selector("[data-testid=new-key]").inner_text()
    app_id = app_key.split("-")[1]
    ok = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {app_key}"})
    assert ok.status_code == 200
    page.click(f"button.revoke[data-id='{app_id}']")
    page.wait_for_function(
        f"document.querySelector(\"button.revoke[data-id='{app_id}']\") === null"
    )
    gone = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {app_key}"})
    assert gone.status_code == 401
    _shot(page, "keys")
    keys = httpx.get(
        server.url + "/ui/api/keys", headers={"Authorization": f"Bearer {admin}"}
    ).json()["keys"]
    assert {k["name"]: bool(k["revoked_at"]) for k in keys} == {"admin": False, "app": True}
    # "auth" rejections are expected while the page had no key yet; anything else is a bug.
    assert not [e for e in errors if e.strip() != "auth"], errors
    json.dumps(keys)  # the JSON API is plain JSON for scripts

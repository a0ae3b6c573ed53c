"""The web playground's static routes: off unless configured, its files and headers, and a page that
uses only the documented API (every path it calls is an OpenAPI path)."""

from __future__ import annotations

import re

import pytest

from gateway_rest.openapi_operations import API_PATHS
from gateway_rest.playground import PLAYGROUND_DIR, check_playground_path
from scripts.playground import playground_url
from server.config import Settings
from server.settings_env import SettingsError
from tests.unit.gateway.conftest import ClientFactory


def test_off_by_default(make_client: ClientFactory) -> None:
    client = make_client()
    assert client.get("/playground/").status_code == 404
    assert Settings().gateway.playground_path is None


def test_served_at_the_configured_path_with_its_security_headers(make_client: ClientFactory) -> None:
    client = make_client(playground_path="/try")
    redirect = client.get("/try", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/try/")
    page = client.get("/try/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("app.js", "javascript"), ("api.js", "javascript"), ("style.css", "text/css")):
        asset = client.get(f"/try/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
    missing = client.get("/try/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert client.get("/try/../app.py").status_code == 404


@pytest.mark.parametrize("path", ["playground", "/playground/", "/", "/a b", "/x/../y", ""])
def test_a_malformed_path_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="playground path"):
        check_playground_path(path)
    if path:
        with pytest.raises(SettingsError, match="S3_PLAYGROUND_PATH"):
            Settings.from_env({"S3_PLAYGROUND_PATH": path})


def test_settings_read_the_path() -> None:
    assert Settings.from_env({"S3_PLAYGROUND_PATH": "/tools/playground"}).gateway.playground_path == "/tools/playground"


def _paths_called_by_the_page() -> set[str]:
    source = (PLAYGROUND_DIR / "api.js").read_text()
    called = set()
    for literal in re.findall(r'[`"](/[a-z][^`"]*)[`"]', source):
        called.add(re.sub(r"\$\{[^}]+\}", "{id}", literal))
    return called


def test_the_page_calls_only_documented_endpoints() -> None:
    documented = {re.sub(r"\{[^}]+\}", "{id}", p) for p in API_PATHS}
    called = _paths_called_by_the_page()
    assert {"/auth/anon", "/jobs/{id}/events", "/jobs/{id}/execute"} <= called  # the parse finds the calls
    assert called <= documented, called - documented


def test_make_playground_prints_where_the_page_is() -> None:
    assert playground_url(Settings()) == "http://127.0.0.1:8080/playground/"
    assert playground_url(Settings().changed(http_host="0.0.0.0", http_port=9000, playground_path="/try")) == (
        "http://127.0.0.1:9000/try/"
    )

"""The Dagster UI behind the reverse proxy docs/DEPLOY.md prescribes: docs/Caddyfile, run by
a real Caddy (Debian's, which `make install` unpacks into the venv) in front of a real
webserver. A stranger's GraphQL mutation is refused, an authenticated one passes, and a
page of another site cannot make a signed-in browser send one (text/plain, GET, foreign
Origin). The documented compose file is the layout this tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import dagster as dg
import httpx
import pytest
import yaml

from devstack.instance import PROJECT_ROOT
from devstack.ports import free_port
from devstack.stack import Stack
from lakehouse.publish.catalog import latest_manifest
from lakehouse.runs import DATASET_ASSET_KEY
from tests.e2e.conftest import ONE_OF_EACH, http, start_stack, wait_for_ingest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CADDYFILE = PROJECT_ROOT / "docs" / "Caddyfile"
COMPOSE = PROJECT_ROOT / "docs" / "docker-compose.yml"
USER, PASSWORD = "operator", "correct horse battery staple"
REPORT = """
mutation Report($params: ReportRunlessAssetEventsParams!) {
  reportRunlessAssetEvents(eventParams: $params) { __typename }
}"""


def caddy() -> str:
    found = PROJECT_ROOT / ".venv" / "tools" / "caddy"
    path = str(found) if found.exists() else shutil.which("caddy")
    assert path, "no caddy: `make install` unpacks Debian's caddy into .venv/tools"
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("ui-proxy"), webserver=True, **ONE_OF_EACH)
    try:
        response = http.post(
            f"{stack.api_url}/v1/ingest", params={"name": "sales"}, content=b"id\n1\n"
        )
        assert wait_for_ingest(stack.api_url, response.json()["ingest_id"])["status"] == (
            "materialized"
        )
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def proxy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docs/Caddyfile in front of the stack's webserver; the proxy's URL."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    hashed = subprocess.run(
        [caddy(), "hash-password", "--plaintext", PASSWORD],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {
        "LAKEHOUSE_UI_ADDRESS": f":{port}",
        "LAKEHOUSE_UI_ORIGIN": origin,
        "LAKEHOUSE_UI_UPSTREAM": stack.webserver_url.removeprefix("http://"),
        "LAKEHOUSE_UI_USER": USER,
        "LAKEHOUSE_UI_PASSWORD_HASH": hashed,
        "HOME": str(tmp_path_factory.mktemp("caddy-home")),
    }
    log = (tmp_path_factory.mktemp("caddy") / "caddy.log").open("wb")
    process = subprocess.Popen(
        [caddy(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(origin, timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, "caddy failed"
                time.sleep(0.1)
        yield origin
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def report(proxy: str, partition: str, **request: object) -> httpx.Response:
    """GraphQL's reportRunlessAssetEvents for the dataset asset, as a forger would send."""
    body = {
        "query": REPORT,
        "variables": {
            "params": {
                "eventType": "ASSET_MATERIALIZATION",
                "assetKey": {"path": list(DATASET_ASSET_KEY.path)},
                "partitionKeys": [partition],
            }
        },
    }
    kwargs = {"json": body, **request}
    return httpx.post(f"{proxy}/graphql", timeout=30, **kwargs)  # type: ignore[arg-type]


def reported(stack: Stack, partition: str) -> int:
    """How many materializations of `partition` the instance holds."""
    with dg.DagsterInstance.from_config(str(stack.settings.resolved_dagster_home)) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(DATASET_ASSET_KEY, asset_partitions=[partition]), limit=10
        ).records
    return len(records)


def test_a_strangers_mutation_is_refused(stack: Stack, proxy: str) -> None:
    response = report(proxy, "sales")
    assert response.status_code == 401
    assert reported(stack, "sales") == 1  # only the real version


def test_an_authenticated_mutation_passes_and_the_catalog_ignores_a_forged_version(
    stack: Stack, proxy: str
) -> None:
    """An operator may report a materialization (Dagster allows it), but the catalog
    believes only the project's own runs: `sales` stays what its run made it, and every
    query still answers."""
    response = report(proxy, "sales", auth=(USER, PASSWORD))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["reportRunlessAssetEvents"]["__typename"] == (
        "ReportRunlessAssetEventsSuccess"
    )
    assert reported(stack, "sales") == 2
    with dg.DagsterInstance.from_config(str(stack.settings.resolved_dagster_home)) as instance:
        manifest = latest_manifest(instance, "sales")
    assert manifest is not None and manifest.version == 1 and manifest.row_count == 1
    answer = http.post(f"{stack.api_url}/v1/sql", json={"sql": "SELECT count(*) AS n FROM sales"})
    assert answer.status_code == 200 and answer.json()["rows"] == [{"n": 1}]


@pytest.mark.parametrize(
    "forgery",
    [
        {"content": "text/plain", "origin": None, "method": "POST"},
        {"content": "application/x-www-form-urlencoded", "origin": None, "method": "POST"},
        {"content": "application/json", "origin": "https://evil.example", "method": "POST"},
        {"content": None, "origin": None, "method": "GET"},
    ],
    ids=["text-plain-post", "form-post", "foreign-origin-json", "get"],
)
def test_cross_site_request_forgery_of_a_mutation_is_refused(
    stack: Stack, proxy: str, forgery: dict
) -> None:
    """What a page of another site can make a signed-in browser send (the browser adds the
    basic-auth credentials itself): refused, and nothing reported."""
    partition = f"forged_{forgery['method'].lower()}"
    headers = {"origin": forgery["origin"]} if forgery["origin"] else {}
    if forgery["method"] == "GET":
        params = {"query": REPORT.replace("$params: ReportRunlessAssetEventsParams!", "")}
        response = httpx.get(
            f"{proxy}/graphql", params=params, headers=headers, auth=(USER, PASSWORD)
        )
    else:
        body = httpx.Request("POST", proxy, json={"query": REPORT}).content
        response = httpx.post(
            f"{proxy}/graphql",
            content=body,
            headers={**headers, "content-type": forgery["content"]},
            auth=(USER, PASSWORD),
        )
    assert response.status_code in (403, 415), response.text
    assert reported(stack, partition) == 0


def test_the_ui_itself_loads_through_the_proxy(proxy: str) -> None:
    page = httpx.get(proxy, auth=(USER, PASSWORD), follow_redirects=True)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_the_documented_compose_file_is_the_layout_tested_here() -> None:
    """docs/docker-compose.yml (not run here: no container engine) publishes only the
    proxies and the API's balancer port, on loopback; the webserver, code server, broker
    and databases stay on the private network; the proxies run docs/Caddyfile; the broker
    has a password and a release with the 2025 Lua CVE fixes; no secret has a default."""
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"ui-proxy", "ui-proxy-read-only"}
    for name in published:
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"])
        assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in services[name]["volumes"]
    assert "--read-only" in services["dagster-webserver-read-only"]["command"]
    redis = services["redis"]
    assert "--requirepass" in redis["command"]
    major, minor, patch = (int(p) for p in redis["image"].split(":")[1].split("."))
    assert (major, minor, patch) >= (7, 4, 6)
    text = COMPOSE.read_text()
    assert "change-me" not in text and "lakehouse-secret-key" not in text

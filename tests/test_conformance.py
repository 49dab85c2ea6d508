"""RFC 7643/7644 conformance: scim2-tester drives a real `scim-hub serve` process over HTTP.

Every check scim2-tester runs must come back without ERROR or CRITICAL. Checks reported as SKIPPED
(and the SHOULD-level DEVIATIONs, which are allowed by the RFCs) are printed and written with their
reasons to `test-artifacts/conformance-skipped.txt`, which the README refers to.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from scim2_client import BaseSyncSCIMClient
from scim2_tester import CheckResult, Status, check_server

from tests.server import LiveServer, run_cli_in_turn, running_server

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FAILED = {Status.ERROR, Status.CRITICAL}
NOTED = {Status.SKIPPED, Status.DEVIATION}


class HttpxSCIMClient(BaseSyncSCIMClient):
    """scim2-client's network engine over `httpx.Client`.

    scim2-client ships its network engine for the `httpx2` package, which the hub does not depend
    on; this is the same engine (`scim2_client.engines.httpx2.SyncSCIMClient`) over `httpx`.
    """

    def __init__(self, client: httpx.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        return (url.scheme, url.host, url.port) == (
            base.scheme,
            base.host,
            base.port,
        ) and url.raw_path.startswith(base.raw_path.rstrip(b"/"))

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        from scim2_client.errors import RequestNetworkException

        try:
            return self.client.request(method, url, **kwargs)
        except httpx.RequestError as exc:
            error = RequestNetworkException()
            error.add_note(str(exc))
            raise error from exc


def _token_for(live_server: LiveServer, idp: str) -> str:
    """A token of a connector using `idp` in the live server's workspace (made by the CLI)."""
    if live_server.init["idp"] == idp:
        return live_server.token
    workspace = live_server.init["workspace"]
    printed = run_cli_in_turn(
        [
            ["connector", "create", idp, "--idp", idp, "--workspace", workspace],
            ["token", "regenerate", "--workspace", workspace, "--connector", idp],
        ],
        live_server.env,
    )
    match = re.search(r"^token:\s+(\S+)\s*$", printed, re.MULTILINE)
    assert match, printed
    return match.group(1)


#: The strict dialect, the tolerant one the `make run` demo gives (a suite run against the
#: demo's token must pass too), and the Entra ID and Okta ones (a suite run through a
#: workspace's Entra or Okta connector must pass as well).
@pytest.fixture(scope="module", params=["generic_scim", "any_scim", "azure_ad", "okta"])
def conformance_results(
    live_server: LiveServer, request: pytest.FixtureRequest
) -> Iterator[list[CheckResult]]:
    """scim2-tester's results against the live server, through a connector of each dialect.

    Each run starts with a user and a group holding custom extension attributes, as Entra ID and
    Okta send them, and a user holding attributes the hub's own schemas do not define (an Okta
    app's custom attributes in the core User namespace, unknown keys in `name` and in the
    Enterprise User extension): every list and search then returns resources a strict client
    can read only if discovery describes them.
    """
    with httpx.Client(
        base_url=live_server.tenant_url,
        headers={"Authorization": f"Bearer {_token_for(live_server, request.param)}"},
        timeout=30,
    ) as http:
        _hold_custom_extensions(http, request.param)
        yield check_server(HttpxSCIMClient(http))


CUSTOM_USER = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
CUSTOM_GROUP = "urn:example:params:scim:schemas:extension:acme:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _hold_custom_extensions(http: httpx.Client, idp: str) -> None:
    user = http.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", CUSTOM_USER],
            "userName": f"custom-{idp}@example.com",
            CUSTOM_USER: {"costCode": "CC-1", "level": 3, "badge": {"number": "B-7"}},
        },
    )
    assert user.status_code == 201, user.text
    undefined = http.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": f"undefined-{idp}@example.com",
            "costCode": "CC-2",
            "name": {"givenName": "Ada", "middleName2": "B."},
            ENTERPRISE: {"costCentre": "CC-3", "manager": {"value": "m-1", "direct": True}},
        },
    )
    assert undefined.status_code == 201, undefined.text
    group = http.post(
        "/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", CUSTOM_GROUP],
            "displayName": f"custom-{idp}",
            CUSTOM_GROUP: {"site": "Paris"},
        },
    )
    assert group.status_code == 201, group.text


def _describe(result: CheckResult) -> str:
    where = f"[{result.resource_type}] " if result.resource_type else ""
    line = f"{result.status.name:<9} {where}{result.title}: {result.reason or '(no reason given)'}"
    if result.status in FAILED and result.data is not None:
        line += f"\n          data: {result.data!r}"[:4000]
    return line


def test_scim2_tester_reports_no_failures(
    conformance_results: list[CheckResult], request: pytest.FixtureRequest
) -> None:
    results = conformance_results
    idp = request.node.callspec.params["conformance_results"]
    suffix = "" if idp == "generic_scim" else f"-{idp}"
    noted = [r for r in results if r.status in NOTED]
    summary: dict[str, int] = {}
    for result in results:
        summary[result.status.name] = summary.get(result.status.name, 0) + 1
    headline = f"scim2-tester {version('scim2-tester')}, {idp}: {len(results)} checks {summary}"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"conformance-skipped{suffix}.txt").write_text(
        "# scim2-tester checks the hub did not pass outright (SKIPPED / DEVIATION), with reasons\n"
        f"# {headline}\n" + ("".join(_describe(r) + "\n" for r in noted) or "(none)\n")
    )
    print(f"\n{headline}")
    for result in noted:
        print("  " + _describe(result))

    failed = [r for r in results if r.status in FAILED]
    assert not failed, f"{len(failed)} scim2-tester checks failed:\n" + "\n".join(
        _describe(r) for r in failed
    )


def test_scim2_tester_exercised_users_and_groups(conformance_results: list[CheckResult]) -> None:
    """Guard against a vacuous pass: discovery worked and CRUD checks ran for both resources."""
    passed = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
    titles = {r.title for r in conformance_results if r.status in passed}
    assert {"service_provider_config_endpoint", "query_all_resource_types"} <= titles
    exercised = {
        (r.resource_type, r.title)
        for r in conformance_results
        if r.status in passed and r.resource_type
    }
    for resource_type in ("User", "Group"):
        for check in ("object_creation", "object_query", "object_replacement", "object_deletion"):
            assert (resource_type, check) in exercised, f"{check} did not pass for {resource_type}"


@pytest.mark.server
def test_server_helper_starts_and_stops_the_process(tmp_path: Path) -> None:
    """`running_server` serves real sockets and leaves no process behind."""
    with running_server(tmp_path, workspace="helper") as server:
        assert server.tenant_url == f"{server.base_url}/scim/v2"
        ready = httpx.get(f"{server.base_url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        config = httpx.get(
            f"{server.tenant_url}/ServiceProviderConfig",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=5,
        )
        assert config.status_code == 200, config.text
    # Stopped by SIGTERM, not SIGKILL: uvicorn shuts down, then re-raises the signal it caught.
    assert server.process.returncode in (0, -signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/healthz", timeout=2)

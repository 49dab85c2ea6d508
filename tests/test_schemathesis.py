"""schemathesis against the hub's OpenAPI document (`GET /openapi.json`), on a real server.

A `scim-hub serve` process over SQLite and over PostgreSQL gets requests that schemathesis
generates from the document: valid ones (positive) and ones that break the schema (negative),
for every operation — SCIM, admin API, owner API, health. Item routes get both generated ids and
ids of resources seeded beforehand, so PUT, PATCH and DELETE reach real users, groups, cards and
templates. Every response must pass:

* `not_a_server_error` — no 5xx;
* `status_code_conformance` — the status is one the document lists for the operation;
* `content_type_conformance` — the Content-Type is the documented one;
* `response_headers_conformance` — documented required headers (ETag, Location,
  WWW-Authenticate, Retry-After) are there and well formed;
* `response_schema_conformance` — the body matches the documented schema (RFC 7643/7644 for
  SCIM: User, Group, ListResponse, Error with an RFC 7644 §3.12 scimType…).

Generation is derandomized (a fixed seed per operation), so a CI run is reproducible; the test
counts the requests it made and fails below `MIN_REQUESTS`, so the run cannot silently shrink.
Failures are collected per operation (each shrunk by hypothesis to a minimal request) and
reported together, with a curl line to reproduce each.
"""

from __future__ import annotations

import email
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hubprocess import HubProcess
from tests.pg import create_database, drop_database
from tests.test_openapi import NOT_OFFERED

#: Requests per run and backend: the same operations and checks on both, a few more examples
#: each on SQLite, to keep `make test` within its budget (the generation, in this process, is
#: most of the run's CPU: ~2000 requests on SQLite took 76 s of a 2-core host's worker).
MIN_REQUESTS = {"sqlite": 1000, "postgresql": 800}
SCALE = {"sqlite": 0.5, "postgresql": 0.4}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CARD_FIELDS = ["display_name", "job_title", "department", "email", "logo_url", "website"]
SPARE_CONNECTOR = "spare"
OWNER = "owner@example.com"


@dataclass
class Seeded:
    """What the run seeds before generating: credentials and the ids item routes are given."""

    token: str
    admin_key: str
    workspace: str
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    session: str | None = None


@dataclass
class Tally:
    """Requests made and statuses seen, per operation."""

    requests: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    unsatisfiable: list[str] = field(default_factory=list)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubProcess]:
    """A real `scim-hub serve` over a fresh SQLite file or PostgreSQL database, one workspace."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        server_url = database = None
    else:
        server_url = request.getfixturevalue("postgres_server_url")
        url = create_database(server_url)
        database = url.rsplit("/", 1)[1]
    process = HubProcess(url, tmp_path / "hub")
    try:
        process.prepare("acme")
        process.start()
        yield process
    finally:
        process.stop()
        if server_url is not None and database is not None:
            drop_database(server_url, database)


def _admin_key(hub: HubProcess) -> str:
    output = hub.cli("admin", "key", "--workspace", "acme").stdout
    match = re.search(r"admin key: (\S+)", output)
    assert match, output
    return match.group(1)


def _session_from_outbox(hub: HubProcess, client: httpx.Client) -> str | None:
    """Follow the link of the owner's activation email (an .eml file without SMTP)."""
    outbox = Path(hub.env["SCIM_HUB_OUTBOX_DIR"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for path in outbox.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes())
            if OWNER not in str(message.get("To", "")):
                continue
            for part in message.walk():
                payload = part.get_payload(decode=True)
                text = payload.decode(errors="replace") if isinstance(payload, bytes) else ""
                found = re.search(r"/activate/([A-Za-z0-9_.~\-]+)", text)
                if not found:
                    continue
                used = client.post(
                    f"/activate/{found.group(1)}", headers={"Sec-Fetch-Site": "same-origin"}
                )
                if used.status_code == 303:
                    return client.cookies.get("scim_hub_session")
        time.sleep(0.1)
    return None


def seed(hub: HubProcess) -> Seeded:
    """Users (one in a group, one with the enterprise extension), groups, templates, a session."""
    seeded = Seeded(hub.token, _admin_key(hub), "acme")
    scim = {"Authorization": f"Bearer {seeded.token}", "Content-Type": "application/scim+json"}
    admin = {"Authorization": f"Bearer {seeded.admin_key}"}
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        for n in range(6):
            body: dict[str, Any] = {
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": f"seed{n}@example.com",
                "externalId": f"ext-{n}",
                "name": {"givenName": f"Seed{n}", "familyName": "Person"},
                "displayName": f"Seed {n}",
                "emails": [{"value": f"seed{n}@example.com", "type": "work", "primary": True}],
                "active": True,
                ENTERPRISE_URN: {"department": "Sales" if n % 2 else "Marketing"},
            }
            created = client.post("/scim/v2/Users", json=body, headers=scim)
            assert created.status_code == 201, created.text
            seeded.users.append(created.json()["id"])
        for n in range(3):
            group = client.post(
                "/scim/v2/Groups",
                json={
                    "schemas": [GROUP_URN],
                    "displayName": f"Seed group {n}",
                    "members": [{"value": seeded.users[n]}],
                },
                headers=scim,
            )
            assert group.status_code == 201, group.text
            seeded.groups.append(group.json()["id"])
        base = f"/api/v1/workspaces/{seeded.workspace}"
        for n, rule in enumerate(['department eq "Sales"', None]):
            template = client.post(
                f"{base}/templates",
                json={"name": f"Seed template {n}", "rule": rule, "fields": {"company_name": "Co"}},
                headers=admin,
            )
            assert template.status_code == 201, template.text
            seeded.templates.append(template.json()["id"])
        # The owner's user is kept out of `users`, so no generated DELETE deactivates it.
        owner = client.post(
            "/scim/v2/Users",
            json={"schemas": [USER_URN], "userName": OWNER, "emails": [{"value": OWNER}]},
            headers=scim,
        )
        assert owner.status_code == 201, owner.text
        seeded.session = _session_from_outbox(hub, client)
    return seeded


def _spare_connector(hub: HubProcess, seeded: Seeded) -> None:
    """(Re)create the connector that connector and token operations are pointed at."""
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        client.post(
            f"/api/v1/workspaces/{seeded.workspace}/connectors",
            json={"name": SPARE_CONNECTOR, "idp": "generic_scim"},
            headers={"Authorization": f"Bearer {seeded.admin_key}"},
        )


def _reset_rate_limit(hub: HubProcess, seeded: Seeded) -> None:
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        client.put(
            f"/api/v1/workspaces/{seeded.workspace}/rate-limit",
            json={"requests_per_second": None},
            headers={"Authorization": f"Bearer {seeded.admin_key}"},
        )


def _credentials(path: str, seeded: Seeded) -> dict[str, str]:
    if path.startswith("/api/v1/me"):
        return {"Authorization": f"Bearer {seeded.session}"} if seeded.session else {}
    if path.startswith("/api/v1/"):
        return {"Authorization": f"Bearer {seeded.admin_key}"}
    return {"Authorization": f"Bearer {seeded.token}"}


def _seeded_parameters(path: str, seeded: Seeded) -> st.SearchStrategy[dict[str, Any]] | None:
    """Path parameters naming seeded resources, or None when the path has nothing to seed."""
    if path.startswith("/scim/v2/Users/{id}"):
        return st.fixed_dictionaries({"id": st.sampled_from(seeded.users)})
    if path.startswith("/scim/v2/Groups/{id}"):
        return st.fixed_dictionaries({"id": st.sampled_from(seeded.groups)})
    if path == "/scim/v2/ResourceTypes/{name}":
        return st.fixed_dictionaries({"name": st.sampled_from(["User", "Group", "user"])})
    if path == "/scim/v2/Schemas/{urn}":
        return st.fixed_dictionaries(
            {"urn": st.sampled_from([USER_URN, ENTERPRISE_URN, GROUP_URN, GROUP_URN.upper()])}
        )
    if not path.startswith("/api/v1/workspaces/{workspace}/"):
        return None
    values: dict[str, st.SearchStrategy[str]] = {"workspace": st.just(seeded.workspace)}
    if "{connector}" in path:
        values["connector"] = st.just(SPARE_CONNECTOR)
    if "{card}" in path:
        values["card"] = st.sampled_from(seeded.users)
    if "{field}" in path:
        values["field"] = st.sampled_from(CARD_FIELDS)
    if "{template}" in path:
        values["template"] = st.sampled_from(seeded.templates)
    return st.fixed_dictionaries(values)


# Every code point but the surrogates (Cs): what UTF-8 encodes, without hypothesis computing the
# codec's intervals (seconds of CPU) to find the same set.
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_JSON_LEAF = st.none() | st.booleans() | st.integers(-5, 5) | _TEXT
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["value", "type", "primary", "givenName", "display"]), inner
        )
    ),
    max_leaves=6,
)


def _patch_operation(seeded: Seeded, groups: bool) -> st.SearchStrategy[dict[str, Any]]:
    """One RFC 7644 §3.5.2 operation on a real attribute, its value mostly of the right type."""
    member = st.sampled_from(seeded.users).map(lambda uid: [{"value": uid}])
    email = st.builds(
        lambda v, p: [{"value": v, "type": "work", "primary": p}], _TEXT, st.booleans()
    )
    group_targets: list[tuple[str | None, st.SearchStrategy[Any]]] = [
        (None, st.fixed_dictionaries({"displayName": _TEXT.filter(str.strip)})),
        ("displayName", _TEXT),
        ("externalId", _TEXT),
        ("members", member),
        ("members", member),
        (f'members[value eq "{seeded.users[0]}"]', _JSON),
        ('members[value eq "nobody"]', _JSON),
        ("meta", _JSON),
        ("title", _TEXT),
    ]
    user_targets: list[tuple[str | None, st.SearchStrategy[Any]]] = [
        (None, st.fixed_dictionaries({"displayName": _TEXT, "title": _TEXT})),
        ("displayName", _TEXT),
        ("title", _TEXT),
        ("active", st.booleans()),
        ("externalId", _TEXT),
        ("userName", _TEXT),
        ("name.givenName", _TEXT),
        ("name", st.fixed_dictionaries({"givenName": _TEXT, "familyName": _TEXT})),
        ("emails", email),
        ('emails[type eq "work"].value', _TEXT),
        ('phoneNumbers[type eq "mobile"].value', _TEXT),
        (f"{ENTERPRISE_URN}:department", _TEXT),
        (f"{ENTERPRISE_URN}:manager", st.fixed_dictionaries({"value": _TEXT})),
        ("members", member),
        ('members[value eq "nobody"]', _JSON),
        ("meta", _JSON),
        ("groups", _JSON),
        ("nickName[", _TEXT),
    ]

    def build(target: tuple[str | None, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
        path, values = target
        where = {"path": path} if path is not None else {}
        wrong = st.sampled_from(["add", "replace"]).flatmap(
            lambda op: _JSON.map(lambda v: {"op": op, **where, "value": v})
        )
        right = st.builds(
            lambda op, v: {"op": op, **where, "value": v},
            st.sampled_from(["add", "replace", "Replace", "Add"]),
            values,
        )
        removal = st.just({"op": "remove", **where})
        return st.one_of(right, right, removal, wrong)

    return st.sampled_from(group_targets if groups else user_targets).flatmap(build)


def _patch_bodies(seeded: Seeded, groups: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "schemas": st.just([PATCH_URN]),
            "Operations": st.lists(_patch_operation(seeded, groups), min_size=1, max_size=3),
        }
    )


@dataclass(frozen=True)
class Variant:
    """One way of running an operation: mode, examples, and what the test fixes itself."""

    label: str
    mode: GenerationMode
    examples: int
    path_parameters: st.SearchStrategy[dict[str, Any]] | None = None
    body: st.SearchStrategy[Any] | None = None


def variants(operation: Any, seeded: Seeded, scale: float) -> list[Variant]:
    """How each operation is exercised; SCIM gets the most requests."""
    scim = operation.path.startswith("/scim/")
    positive, negative = (30, 10) if scim else (8, 4)
    positive, negative = max(2, round(positive * scale)), max(2, round(negative * scale))
    result = [
        Variant("positive", GenerationMode.POSITIVE, positive),
        Variant("negative", GenerationMode.NEGATIVE, negative),
    ]
    seeded_parameters = _seeded_parameters(operation.path, seeded)
    if seeded_parameters is not None:
        result += [
            Variant("positive seeded", GenerationMode.POSITIVE, positive, seeded_parameters),
            Variant("negative seeded", GenerationMode.NEGATIVE, negative, seeded_parameters),
        ]
    if operation.method == "patch" and scim:
        result.append(
            Variant(
                "PatchOp seeded",
                GenerationMode.POSITIVE,
                positive,
                seeded_parameters,
                _patch_bodies(seeded, groups=operation.path.startswith("/scim/v2/Groups")),
            )
        )
    return result


def _fixed_workspace(path: str, seeded: Seeded) -> dict[str, Any] | None:
    """Admin routes with generated ids still name the key's workspace (else all is 404)."""
    if path.startswith("/api/v1/workspaces/{workspace}"):
        return {"workspace": seeded.workspace}
    return None


def run_variant(
    operation: Any, variant: Variant, base_url: str, seeded: Seeded, tally: Tally
) -> None:
    """Generate the variant's requests for one operation and check every response."""
    session = requests.Session()
    headers = _credentials(operation.path, seeded)
    key = f"{operation.method.upper()} {operation.path} [{variant.label}]"
    # RFC 7644 §3.7 and §3.11: a service provider without bulk or /Me answers 501, documented.
    checks = [c for c in CHECKS if c is not not_a_server_error or operation.path not in NOT_OFFERED]
    # Built once per variant: seeded path parameters and PatchOp bodies are drawn per example
    # and put into the generated case, which is cheaper than a strategy per value.
    strategy = operation.as_strategy(
        generation_mode=variant.mode, path_parameters=_fixed_workspace(operation.path, seeded)
    )

    @settings(
        max_examples=variant.examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
    )
    @given(case=strategy, data=st.data())
    def exercise(case: Any, data: st.DataObject) -> None:
        if variant.path_parameters is not None:
            case.path_parameters = {**case.path_parameters, **data.draw(variant.path_parameters)}
        if variant.body is not None:
            case.body = data.draw(variant.body)
            case.media_type = "application/scim+json"
            case.headers.pop("If-Match", None)  # a random version would only test 412
        response = case.call(base_url=base_url, session=session, headers=headers)
        tally.requests += 1
        tally.statuses[(key, response.status_code)] += 1
        case.validate_response(response, checks=checks, headers=headers)

    try:
        exercise()
    except Unsatisfiable:
        # Nothing to negate (no parameters, no body): the positive variant covered it.
        tally.unsatisfiable.append(key)
    except (Exception, BaseExceptionGroup) as exc:
        tally.failures[key] = str(exc)[:4000]
    finally:
        session.close()


def _rank(operation: Any) -> tuple[int, str, str]:
    """SCIM first, then the admin API (deletes last, so others still find seeded resources)."""
    if operation.path.startswith("/scim/"):
        group = 0
    elif operation.path.startswith("/api/v1/workspaces"):
        group = 1
    else:
        group = 2
    return (group, "~" if operation.method == "delete" else operation.method, operation.path)


#: Operations that must have answered 2xx at least once, so the run cannot decay into 4xx only.
MUST_SUCCEED = [
    "POST /scim/v2/Users",
    "GET /scim/v2/Users",
    "POST /scim/v2/Users/.search",
    "PUT /scim/v2/Users/{id}",
    "PATCH /scim/v2/Users/{id}",
    "DELETE /scim/v2/Users/{id}",
    "POST /scim/v2/Groups",
    "GET /scim/v2/Groups/{id}",
    "PUT /scim/v2/Groups/{id}",
    "PATCH /scim/v2/Groups/{id}",
    "POST /scim/v2/.search",
    "GET /scim/v2/Schemas/{urn}",
    "GET /api/v1/workspaces/{workspace}/cards/{card}",
    "PATCH /api/v1/workspaces/{workspace}/templates/{template}",
    "GET /api/v1/me/card",
]


def test_schemathesis_finds_no_server_error_and_no_schema_break(hub: HubProcess) -> None:
    started = time.monotonic()
    backend = "sqlite" if hub.database_url.startswith("sqlite") else "postgresql"
    seeded = seed(hub)
    assert seeded.session, "no activation email could be followed to start an owner session"
    schema = schemathesis.openapi.from_url(f"{hub.base_url}/openapi.json")
    tally = Tally()
    for operation in sorted((r.ok() for r in schema.get_all_operations()), key=_rank):
        if "{connector}" in operation.path:
            _spare_connector(hub, seeded)
        for variant in variants(operation, seeded, SCALE[backend]):
            run_variant(operation, variant, hub.base_url, seeded, tally)
        if operation.path.endswith("/rate-limit"):
            _reset_rate_limit(hub, seeded)
    elapsed = time.monotonic() - started

    by_status: Counter[int] = Counter()
    succeeded: set[str] = set()
    for (key, status), n in tally.statuses.items():
        by_status[status] += n
        if 200 <= status < 300:
            succeeded.add(key.split(" [", 1)[0])
    if os.environ.get("SCIM_HUB_TEST_SCHEMATHESIS_VERBOSE"):
        for (key, status), n in sorted(tally.statuses.items()):
            print(f"  {key} {status}: {n}")
    print(
        f"\nschemathesis: {tally.requests} requests in {elapsed:.1f} s "
        f"({backend}); statuses {dict(sorted(by_status.items()))}"
    )
    assert not tally.failures, "\n\n".join(f"== {k}\n{v}" for k, v in tally.failures.items())
    assert tally.requests >= MIN_REQUESTS[backend], f"only {tally.requests} requests on {backend}"
    assert not [k for k in MUST_SUCCEED if k not in succeeded], sorted(succeeded)

"""The email outbox and its sender: retries, outages, failures, .eml files, concurrent senders.

Mail goes to a real SMTP server (aiosmtpd on a free 127.0.0.1 port) or to real files; nothing is
mocked. Backoffs are milliseconds so an "outage" lasts well under a second.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import resource
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import Connection, select

from hub.core import outbox
from hub.core.admins import create_key
from hub.core.clock import now_us
from hub.core.database import open_database
from hub.core.mailer import (
    ActivationContent,
    DeliveryError,
    FileMailer,
    SmtpMailer,
    activation_email,
    message_id,
)
from hub.core.models import activation_links, admins, outbox_messages
from hub.core.tenants import InitResult
from hub.core.users import create as create_user
from hub.settings import Settings, SettingsError, load_settings
from tests.conftest import SCIM_JSON, TEST_BASE_URL, USER_URN
from tests.dbstate import query
from tests.hubprocess import HubProcess
from tests.pg import free_port

LINK = re.compile(r"https?://\S+/activate/([A-Za-z0-9_.-]+)")
#: The server secret of these tests (`SCIM_HUB_SECRET`), so no key file is written anywhere.
TEST_SECRET = "test-server-secret-" + "s" * 32


class Inbox:
    """An aiosmtpd handler keeping every message it accepts, and counting SMTP sessions.

    A test may make it refuse: `refuse_rcpt` answers RCPT TO for a recipient (every time),
    `refuse_data_once` answers DATA for a recipient (once); `end_session_after` ends a session
    at the MAIL FROM after that many accepted messages, with a 421 (`end_with="421"`) or by
    dropping the connection without an answer (`end_with="drop"`).
    """

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        #: SMTP sessions opened (counted at their first EHLO)
        self.sessions = 0
        #: the session number each accepted message came over, in arrival order
        self.session_of: list[int] = []
        self.refuse_rcpt: dict[str, str] = {}
        self.refuse_data_once: dict[str, str] = {}
        self.end_session_after: int | None = None
        self.end_with = "421"
        #: seconds the server takes to accept each message's DATA
        self.delay = 0.0
        #: seconds the server takes to answer EHLO, by session number
        self.slow_hello: dict[int, float] = {}
        self._lock = threading.Lock()

    def _session(self, session: Any) -> int:
        number: int | None = getattr(session, "hub_number", None)
        if number is None:
            with self._lock:
                self.sessions += 1
                number = session.hub_number = self.sessions
            session.hub_accepted = 0
        return number

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        number = self._session(session)
        if number in self.slow_hello:
            await asyncio.sleep(self.slow_hello[number])
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._session(session)
        if self.end_session_after is not None and session.hub_accepted >= self.end_session_after:
            if self.end_with == "drop":
                server.transport.close()
                return "250 OK"  # never reaches the client: the transport is closed
            return "421 4.7.0 Too many messages in this session, closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        [recipient] = envelope.rcpt_tos
        refusal = self.refuse_data_once.pop(recipient, None)
        if refusal is not None:
            return refusal
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.session_of.append(self._session(session))
        session.hub_accepted += 1
        return "250 Message accepted for delivery"

    def links(self) -> list[str]:
        """The activation tokens of every message, in arrival order."""
        found = []
        for message in self.messages:
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            match = LINK.search(body.get_content())
            assert match is not None, body.get_content()
            found.append(match.group(1))
        return found


class SmtpServer:
    """A real SMTP server on a fixed port that a test can stop and start (outages)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        #: keyword arguments of aiosmtpd's `SMTP` (authenticator, tls_context, …)
        self.options: dict[str, Any] = {}
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, **self.options
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_port() -> int:
    """A free port; nothing listens until a test starts `smtp`."""
    return free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[SmtpServer]:
    """A real SMTP server on `smtp_port`, stopped (call `.start()`), always stopped at the end."""
    server = SmtpServer(smtp_port)
    yield server
    server.stop()


def mail_settings(db_url: str, **overrides: Any) -> Settings:
    """Test settings with a fast sender: millisecond backoff and polling."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "base_url": TEST_BASE_URL,
        "smtp_security": "none",
        "smtp_timeout_seconds": 5,
        "mail_retry_base_ms": 40,
        "mail_retry_max_ms": 160,
        "mail_poll_ms": 50,
        "mail_max_attempts": 1000,
        "secret": TEST_SECRET,
    }
    values.update(overrides)
    return load_settings(environ={}, **values)


@pytest.fixture
def settings(db_url: str, smtp_port: int, tmp_path: Path) -> Settings:
    """Settings sending to `smtp_port` on 127.0.0.1, with a fast sender."""
    return mail_settings(
        db_url, smtp_host="127.0.0.1", smtp_port=smtp_port, outbox_dir=str(tmp_path / "outbox")
    )


async def admin_headers(db_url: str, tenant: InitResult) -> dict[str, str]:
    """`Authorization` for a fresh admin key of the tenant's first admin."""
    db = open_database(db_url)

    def make(conn: Connection) -> str:
        admin_pk = conn.execute(select(admins.c.pk).where(admins.c.id == tenant.admin_id))
        return create_key(conn, admin_pk=admin_pk.scalar_one())

    try:
        key = await db.write(make)
    finally:
        await db.close()
    return {"Authorization": f"Bearer {key}"}


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Wait until `check()` is truthy (returning it), or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


async def outbox_list(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> dict[str, Any]:
    """The admin API's outbox listing for workspace "acme"."""
    response = await client.get(
        "/api/v1/workspaces/acme/activation-emails", headers=headers, params=params
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client over a fresh `create_app(settings)` whose lifespan (and sender) runs meanwhile."""
    from litestar.testing import AsyncTestClient

    from hub.app import create_app

    async with AsyncTestClient(app=create_app(settings), base_url=TEST_BASE_URL) as client:
        yield client


async def wait_for_status(
    client: httpx.AsyncClient, headers: dict[str, str], status: str, count: int = 1
) -> list[dict[str, Any]]:
    """Poll the admin listing until `count` messages have `status`; return them."""
    deadline = time.monotonic() + 10
    while True:
        items = (await outbox_list(client, headers, status=status))["items"]
        if len(items) >= count:
            return items
        assert time.monotonic() < deadline, f"no {count} {status} messages"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- outages


async def test_smtp_outage_retries_then_delivers_each_email_exactly_once(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    db_url: str,
    tenant: InitResult,
) -> None:
    headers = await admin_headers(db_url, tenant)
    names = [f"outage-{i}@example.com" for i in range(12)]
    for name in names:
        assert (await scim.post("/Users", make_user_body(name))).status_code == 201

    # Nothing listens: every message is retried, and admins see why.
    failing = await _wait_attempts(client, headers, minimum=2, count=len(names))
    assert all(m["status"] == "queued" and m["last_error"] for m in failing)
    assert "unavailable" in failing[0]["last_error"]

    smtp.start()
    sent = await wait_for_status(client, headers, "sent", len(names))
    await asyncio.sleep(0.3)  # give a would-be duplicate the time to show up

    received = smtp.inbox.messages
    assert sorted(str(m["To"]) for m in received) == sorted(names)
    ids = [str(m["Message-ID"]) for m in received]
    assert len(set(ids)) == len(names), "an email was delivered twice"
    assert {message_id(m["id"], "no-reply@localhost") for m in sent} == set(ids)
    assert all(m["last_error"] is None and m["attempts"] >= 2 for m in sent)


async def _wait_attempts(
    client: httpx.AsyncClient, headers: dict[str, str], *, minimum: int, count: int
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        items = (await outbox_list(client, headers))["items"]
        if len(items) == count and all(m["attempts"] >= minimum for m in items):
            return items
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.05)


async def test_messages_fail_after_the_last_attempt_with_the_error_shown(
    db_url: str, tenant: InitResult, smtp: SmtpServer, make_user_body: Any, tmp_path: Path
) -> None:
    settings = mail_settings(
        db_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        mail_max_attempts=3,
        outbox_dir=str(tmp_path),
    )
    headers = await admin_headers(db_url, tenant)
    async with running_app(settings) as client:
        scim = {"Authorization": f"Bearer {tenant.token}"}
        body = make_user_body("doomed@example.com")
        assert (await client.post("/scim/v2/Users", json=body, headers=scim)).status_code == 201
        [failed] = await wait_for_status(client, headers, "failed")
        assert failed["attempts"] == 3
        assert "unavailable" in failed["last_error"]
        assert failed["next_attempt"] is None
        assert failed["finished"]
        smtp.start()
        await asyncio.sleep(0.3)
    assert smtp.inbox.messages == [], "a failed message must stay failed"
    assert await _link_nonces_left(db_url) == 0, "a finished message keeps no link nonce"


async def test_a_user_without_an_address_fails_visibly_and_others_still_go_out(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    db_url: str,
    tenant: InitResult,
) -> None:
    smtp.start()
    headers = await admin_headers(db_url, tenant)
    assert (await scim.post("/Users", make_user_body("no-address"))).status_code == 201
    body = make_user_body("someone", emails=[{"value": "someone@example.com", "type": "work"}])
    assert (await scim.post("/Users", body)).status_code == 201
    [failed] = await wait_for_status(client, headers, "failed")
    assert failed["last_error"] == "no email address"
    assert failed["user_name"] == "no-address"
    assert failed["recipient"] is None
    await wait_for_status(client, headers, "sent")
    assert [str(m["To"]) for m in smtp.inbox.messages] == ["someone@example.com"]


async def test_without_smtp_messages_are_written_as_eml_files(
    db_url: str, tenant: InitResult, make_user_body: Any, tmp_path: Path
) -> None:
    directory = tmp_path / "outbox"
    settings = mail_settings(db_url, outbox_dir=str(directory))
    headers = await admin_headers(db_url, tenant)
    async with running_app(settings) as client:
        scim = {"Authorization": f"Bearer {tenant.token}"}
        body = make_user_body("eml@example.com", displayName="Eml Person")
        assert (await client.post("/scim/v2/Users", json=body, headers=scim)).status_code == 201
        [sent] = await wait_for_status(client, headers, "sent")
    [path] = directory.glob("*.eml")
    assert path == FileMailer(str(directory)).path_for(message_id(sent["id"], "x@localhost"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "eml@example.com"
    assert message["Subject"] == "Activate your acme business card"
    assert message.get_body(preferencelist=("html",)) is not None
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert "Hello Eml Person" in text.get_content()
    assert LINK.search(text.get_content())


# --------------------------------------------------------------------------- concurrency, crashes


async def queue_users(db_url: str, tenant: InitResult, count: int) -> None:
    """Provision `count` users straight through the core, so no sender runs meanwhile."""
    from hub.core.tokens import authenticate, digest

    db = open_database(db_url)

    def work(conn: Connection, index: int) -> None:
        caller = authenticate(conn, digest(tenant.token))
        assert caller is not None
        body = {"schemas": [], "userName": f"many-{index}@example.com"}
        body["schemas"] = ["urn:ietf:params:scim:schemas:core:2.0:User"]
        create_user(conn, caller, body, "")

    try:
        for index in range(count):
            await db.write(work, index)
    finally:
        await db.close()


async def _link_nonces_left(db_url: str) -> int:
    db = open_database(db_url)
    try:
        nonces = await db.read(
            lambda conn: conn.execute(
                select(outbox_messages.c.pk).where(outbox_messages.c.link_nonce.is_not(None))
            ).all()
        )
    finally:
        await db.close()
    return len(nonces)


async def test_two_senders_on_one_database_never_send_the_same_email_twice(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    await queue_users(db_url, tenant, 40)
    smtp.start()
    settings = mail_settings(db_url, smtp_host="127.0.0.1", smtp_port=smtp.port, mail_batch_size=3)
    # Two databases handles, two senders: what two server processes would run.
    handles = [open_database(db_url), open_database(db_url)]
    senders = [outbox.Sender(db, settings) for db in handles]
    try:
        for sender in senders:
            sender.start()
        await eventually(lambda: len(smtp.inbox.messages) >= 40, within=20)
        await asyncio.sleep(0.3)
    finally:
        for sender in senders:
            await sender.stop()
        for db in handles:
            await db.close()
    ids = [str(m["Message-ID"]) for m in smtp.inbox.messages]
    assert len(ids) == 40
    assert len(set(ids)) == 40
    assert await _link_nonces_left(db_url) == 0


async def test_a_sender_that_dies_mid_delivery_is_taken_over_with_the_same_message_id(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    await queue_users(db_url, tenant, 1)
    smtp.start()
    settings = mail_settings(db_url, smtp_host="127.0.0.1", smtp_port=smtp.port)
    db = open_database(db_url)
    try:
        # A sender claims the message, then "crashes": no delivery, no outcome recorded.
        [claimed] = await db.write(outbox.claim, now=now_us(), lease_us=300_000, limit=10)
        sender = outbox.Sender(db, settings)
        sender.start()
        await asyncio.sleep(0.15)
        assert smtp.inbox.messages == [], "the lease must keep other senders off"
        await eventually(lambda: smtp.inbox.messages, within=10)
        await sender.stop()
    finally:
        await db.close()
    [message] = smtp.inbox.messages
    assert str(message["Message-ID"]) == message_id(claimed.id, settings.mail_from)


# --------------------------------------------------------------------------- SMTP connections


def many(index: int) -> str:
    """The address `queue_users` gives its `index`-th user."""
    return f"many-{index}@example.com"


@asynccontextmanager
async def sending(
    db_url: str, settings: Settings, mailer: SmtpMailer | None = None
) -> AsyncIterator[None]:
    """One process's sender running over `db_url` meanwhile."""
    db = open_database(db_url)
    sender = outbox.Sender(db, settings, mailer)
    try:
        sender.start()
        yield
    finally:
        await sender.stop()
        await db.close()


async def outbox_rows(db_url: str) -> dict[str, tuple[str, int, str | None]]:
    """Every message's (status, attempts, last error), by recipient."""
    db = open_database(db_url)
    ob = outbox_messages.c
    try:
        rows = await db.read(
            lambda conn: conn.execute(
                select(ob.recipient, ob.status, ob.attempts, ob.last_error)
            ).all()
        )
    finally:
        await db.close()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def settled(db_url: str, count: int) -> dict[str, tuple[str, int, str | None]]:
    """The outbox once none of its `count` messages is queued any more."""
    deadline = time.monotonic() + 15
    while True:
        rows = await outbox_rows(db_url)
        if len(rows) == count and all(status != "queued" for status, _, _ in rows.values()):
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.05)


def smtp_settings(db_url: str, smtp: SmtpServer, **overrides: Any) -> Settings:
    """Fast test settings sending to `smtp`, one batch of up to 30 messages."""
    values = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "mail_batch_size": 30}
    return mail_settings(db_url, **(values | overrides))


def assert_each_once(received: list[EmailMessage], count: int) -> None:
    ids = [str(m["Message-ID"]) for m in received]
    assert len(ids) == count
    assert len(set(ids)) == count, "an email was delivered twice"


@pytest.mark.parametrize("connections", [1, 2, 3])
async def test_a_batch_goes_out_over_at_most_smtp_connections_connections(
    db_url: str, tenant: InitResult, smtp: SmtpServer, connections: int
) -> None:
    """30 messages, one batch: `smtp_connections` SMTP sessions, not one per message."""
    await queue_users(db_url, tenant, 30)
    smtp.start()
    settings = smtp_settings(db_url, smtp, smtp_connections=connections)
    async with sending(db_url, settings):
        rows = await settled(db_url, 30)
    assert {status for status, _, _ in rows.values()} == {"sent"}
    assert_each_once(smtp.inbox.messages, 30)
    assert smtp.inbox.sessions == connections
    # Every connection carried its share, one message after another.
    assert sorted(set(smtp.inbox.session_of)) == list(range(1, connections + 1))


async def test_a_recipient_refused_mid_batch_fails_alone_and_the_connection_goes_on(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    await queue_users(db_url, tenant, 15)
    smtp.inbox.refuse_rcpt[many(7)] = "550 5.1.1 No such user here"
    smtp.start()
    async with sending(db_url, smtp_settings(db_url, smtp, smtp_connections=1)):
        rows = await settled(db_url, 15)
    assert rows.pop(many(7)) == ("failed", 1, "recipient refused: [550]")
    assert set(rows.values()) == {("sent", 1, None)}
    assert sorted(str(m["To"]) for m in smtp.inbox.messages) == sorted(rows)
    # The refusal was reset (RSET) and the messages after it went over the same session.
    assert smtp.inbox.sessions == 1


async def test_a_4xx_for_one_message_is_retried_and_the_message_arrives(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    await queue_users(db_url, tenant, 10)
    smtp.inbox.refuse_data_once[many(3)] = "451 4.3.0 Try again later"
    smtp.start()
    async with sending(db_url, smtp_settings(db_url, smtp, smtp_connections=1)):
        rows = await settled(db_url, 10)
    assert rows.pop(many(3)) == ("sent", 2, None)
    assert set(rows.values()) == {("sent", 1, None)}
    assert_each_once(smtp.inbox.messages, 10)
    assert str(smtp.inbox.messages[-1]["To"]) == many(3), "sent again by a later round"


@pytest.mark.parametrize("end_with", ["421", "drop"])
async def test_a_server_ending_sessions_after_a_few_messages_still_gets_the_batch_at_once(
    db_url: str, tenant: InitResult, smtp: SmtpServer, end_with: str
) -> None:
    """A server closing each session after 4 messages (with a 421, or silently): connections
    are opened again and the whole batch goes out in its first round, each message once."""
    await queue_users(db_url, tenant, 30)
    smtp.inbox.end_session_after = 4
    smtp.inbox.end_with = end_with
    smtp.start()
    async with sending(db_url, smtp_settings(db_url, smtp, smtp_connections=2)):
        rows = await settled(db_url, 30)
    assert set(rows.values()) == {("sent", 1, None)}
    assert_each_once(smtp.inbox.messages, 30)
    assert max(smtp.inbox.session_of.count(n) for n in set(smtp.inbox.session_of)) == 4
    assert smtp.inbox.sessions >= 8


async def test_a_connection_carries_at_most_its_share_then_a_fresh_one_is_opened(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    await queue_users(db_url, tenant, 30)
    smtp.start()
    settings = smtp_settings(db_url, smtp, smtp_connections=2)
    async with sending(db_url, settings, SmtpMailer(settings, messages_per_connection=5)):
        rows = await settled(db_url, 30)
    assert set(rows.values()) == {("sent", 1, None)}
    assert_each_once(smtp.inbox.messages, 30)
    carried = [smtp.inbox.session_of.count(n) for n in range(1, smtp.inbox.sessions + 1)]
    assert max(carried) == 5
    # Six sessions of five; a seventh when both connections were open as the batch ran out (and a
    # session opened just after it ran out carries nothing: it only says EHLO and QUIT).
    assert 6 <= len([n for n in carried if n]) <= 7


async def test_a_connection_that_opens_after_the_batch_is_gone_just_quits(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    """The second connection's greeting is slow: the first sends both messages meanwhile."""
    await queue_users(db_url, tenant, 2)
    smtp.inbox.slow_hello[2] = 0.5
    smtp.start()
    async with sending(db_url, smtp_settings(db_url, smtp, smtp_connections=2)):
        rows = await settled(db_url, 2)
    assert set(rows.values()) == {("sent", 1, None)}
    assert_each_once(smtp.inbox.messages, 2)
    assert smtp.inbox.session_of == [1, 1]
    assert smtp.inbox.sessions == 2


async def test_smtp_auth_logs_in_once_per_connection_and_a_refused_login_is_retried(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    """Failed authentication is the operator's to fix: every message waits, none fails."""
    logins: list[tuple[str, str]] = []
    password = {"accepted": "wrong"}

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        login, secret_ = data.login.decode(), data.password.decode()
        logins.append((login, secret_))
        ok = login == "hub" and secret_ == password["accepted"]
        return AuthResult(success=ok, handled=False)

    smtp.options = {"authenticator": authenticator, "auth_require_tls": False}
    await queue_users(db_url, tenant, 12)
    smtp.start()
    settings = smtp_settings(
        db_url, smtp, smtp_connections=2, smtp_username="hub", smtp_password="s3cret"
    )
    async with sending(db_url, settings):
        await eventually(lambda: len(logins) >= 6)
        rows = await outbox_rows(db_url)
        assert {status for status, _, _ in rows.values()} == {"queued"}
        assert all(error and error.startswith("SMTP 535") for _, _, error in rows.values())
        assert smtp.inbox.messages == []
        password["accepted"] = "s3cret"  # the operator fixes the mailbox
        rows = await settled(db_url, 12)
    assert {status for status, _, _ in rows.values()} == {"sent"}
    assert_each_once(smtp.inbox.messages, 12)
    # One login per connection, never one per message.
    assert len(set(smtp.inbox.session_of)) <= 2
    assert set(logins) <= {("hub", "s3cret")}


async def test_a_slow_server_never_keeps_a_batch_past_half_its_lease(
    db_url: str, tenant: InitResult, smtp: SmtpServer
) -> None:
    """Messages go out one after another: with 0.1 s per message and a 0.6 s lease, a round
    starts no message after 0.3 s and leaves the rest to later rounds, so no other sender can
    claim a message while it is still going out."""
    await queue_users(db_url, tenant, 10)
    smtp.inbox.delay = 0.1
    smtp.start()
    settings = smtp_settings(db_url, smtp, smtp_connections=1, mail_lease_ms=600)
    async with sending(db_url, settings):
        rows = await settled(db_url, 10)
    assert {status for status, _, _ in rows.values()} == {"sent"}
    assert_each_once(smtp.inbox.messages, 10)
    assert max(attempts for _, attempts, _ in rows.values()) > 1
    assert smtp.inbox.sessions > 1


@pytest.fixture
def server_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 whose self-signed certificate the client trusts."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    # aiosmtplib's default context reads the trust store from SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_starttls_and_tls_secure_each_connection_once(
    db_url: str, tenant: InitResult, smtp: SmtpServer, server_tls: ssl.SSLContext, security: str
) -> None:
    logins: list[str] = []

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        logins.append(data.login.decode())
        return AuthResult(success=data.password == b"s3cret", handled=False)

    # STARTTLS: AUTH only once the session is encrypted (aiosmtpd's default). Implicit TLS:
    # encrypted from the start, which aiosmtpd's AUTH check does not see, hence the flag.
    if security == "starttls":
        smtp.options = {"tls_context": server_tls, "require_starttls": True}
    else:
        smtp.options = {"ssl_context": server_tls, "auth_require_tls": False}
    smtp.options["authenticator"] = authenticator
    await queue_users(db_url, tenant, 12)
    smtp.start()
    settings = smtp_settings(
        db_url,
        smtp,
        smtp_security=security,
        smtp_connections=2,
        smtp_username="hub",
        smtp_password="s3cret",
    )
    async with sending(db_url, settings):
        rows = await settled(db_url, 12)
    assert set(rows.values()) == {("sent", 1, None)}
    assert_each_once(smtp.inbox.messages, 12)
    assert len(set(smtp.inbox.session_of)) == 2
    assert logins == ["hub", "hub"]


def test_smtp_connections_must_be_at_least_one() -> None:
    with pytest.raises(SettingsError, match="SCIM_HUB_SMTP_CONNECTIONS must be at least 1"):
        load_settings(environ={"SCIM_HUB_SMTP_CONNECTIONS": "0"})
    assert load_settings(environ={}).smtp_connections == 2
    assert load_settings(environ={"SCIM_HUB_SMTP_CONNECTIONS": "3"}).smtp_connections == 3


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = outbox.Policy(retry_base_us=100, retry_max_us=1000)
    assert [policy.backoff_us(n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]


# --------------------------------------------------------------------------- composing


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


def _bodies(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    plain, page = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert page.get_content_type() == "text/html"
    for part in (plain, page):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "base64"
    return plain.get_content(), page.get_content()


def test_the_activation_email_parses_with_the_standard_library() -> None:
    link = "https://hub.example/activate/shact_abcdefghijklmnopqrstuv.MAC-value_0123"
    composed = activation_email(
        ActivationContent(name="Ada Lovelace", workspace="acme", link=link),
        recipient="ada@example.com",
        mail_from="scim-hub <no-reply@localhost>",
        msg_id="<id-1@localhost>",
    )
    assert composed.sender == "no-reply@localhost"
    assert composed.recipient == "ada@example.com"
    assert composed.data.isascii()
    assert all(len(line) <= 78 for line in composed.data.split(b"\n")), composed.data
    message = _parse(composed.data)
    assert message["Subject"] == "Activate your acme business card"
    assert message["From"] == "scim-hub <no-reply@localhost>"
    assert message["To"] == "ada@example.com"
    assert message["Message-ID"] == "<id-1@localhost>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    assert abs(message["Date"].datetime.timestamp() - time.time()) < 5
    plain, page = _bodies(message)
    assert plain.startswith("Hello Ada Lovelace,\n\nacme has created a digital business card")
    assert f"\n\n{link}\n\n" in plain
    assert f'<a href="{link}">Activate your account</a>' in page
    assert message.get_body(preferencelist=("html",)) is not None


def test_non_ascii_names_are_encoded_and_header_values_cannot_break_lines() -> None:
    content = ActivationContent(
        name='Zoë <Ångström> & "Co"',
        workspace="Café Ünïcode GmbH\r\nBcc: evil@example.com und eine sehr lange Firma "
        "mit Wörtern",
        link="https://hub.example/activate/shact_x.y?a=1&b=2",
    )
    composed = activation_email(
        content,
        recipient="zoe@example.com",
        mail_from="Blinq Café <no-reply@blinq.example>",
        msg_id="<id-2@blinq.example>",
    )
    assert composed.sender == "no-reply@blinq.example"
    assert all(len(line) <= 78 for line in composed.data.split(b"\n")), composed.data
    message = _parse(composed.data)
    assert "Bcc" not in message
    assert message["Subject"] == (
        "Activate your Café Ünïcode GmbH  Bcc: evil@example.com und eine sehr lange Firma "
        "mit Wörtern business card"
    )
    assert message["From"].addresses[0].display_name == "Blinq Café"
    assert message["From"].addresses[0].addr_spec == "no-reply@blinq.example"
    plain, page = _bodies(message)
    assert 'Hello Zoë <Ångström> & "Co",' in plain
    assert "Hello Zoë &lt;Ångström&gt; &amp; &quot;Co&quot;," in page
    assert 'href="https://hub.example/activate/shact_x.y?a=1&amp;b=2"' in page
    long_ascii = activation_email(
        ActivationContent(name="A", workspace="word " * 30, link="https://x/activate/t"),
        recipient="a@example.com",
        mail_from="x@localhost",
        msg_id="<id-3@localhost>",
    )
    assert all(len(line) <= 78 for line in long_ascii.data.split(b"\n"))
    assert _parse(long_ascii.data)["Subject"] == f"Activate your {'word ' * 30} business card"


@pytest.mark.parametrize("recipient", ["a@example.com\r\nBcc: evil@example.com", "a@x.y\x00", " "])
def test_a_recipient_that_could_inject_headers_is_refused_for_good(recipient: str) -> None:
    with pytest.raises(DeliveryError, match="invalid email address") as refused:
        activation_email(
            ActivationContent(name="A", workspace="w", link="https://x/activate/t"),
            recipient=recipient,
            mail_from="x@localhost",
            msg_id="<id@localhost>",
        )
    assert refused.value.permanent


async def test_the_file_mailer_writes_a_batch_and_makes_its_directory_again(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "outbox"
    mailer = FileMailer(str(directory))

    def compose(index: int) -> Any:
        return activation_email(
            ActivationContent(name=f"N{index}", workspace="w", link="https://x/activate/t"),
            recipient=f"n{index}@example.com",
            mail_from="x@localhost",
            msg_id=f"<m-{index}@localhost>",
        )

    batch = [compose(i) for i in range(5)]
    assert await mailer.deliver(batch) == [None] * 5
    for composed in batch:
        assert mailer.path_for(composed.msg_id).read_bytes() == composed.data
    assert not list(directory.glob("*.partial"))
    # A resend overwrites the same file; a directory removed meanwhile is made again.
    shutil.rmtree(directory)
    assert await mailer.deliver(batch[:2]) == [None, None]
    assert sorted(p.name for p in directory.iterdir()) == ["m-0@localhost.eml", "m-1@localhost.eml"]
    # A directory that cannot be made fails the batch, to be retried.
    blocked = FileMailer(str(tmp_path / "file" / "outbox"))
    (tmp_path / "file").write_text("not a directory")
    outcomes = await blocked.deliver(batch[:2])
    assert all(isinstance(o, DeliveryError) and not o.permanent for o in outcomes)
    await mailer.close()
    await blocked.close()


async def test_one_record_call_stores_every_outcome_and_a_cancellation_stands(
    db_url: str, tenant: InitResult
) -> None:
    """`record` writes a batch with one executemany per kind of outcome: sent (and the link's
    lifetime starts), failed, retried; a message cancelled while out for delivery stays so."""
    await queue_users(db_url, tenant, 4)
    policy = outbox.Policy(max_attempts=3, retry_base_us=1_000_000, link_ttl_us=7_000_000)
    db = open_database(db_url)

    def state(conn: Connection) -> list[Any]:
        return list(
            conn.execute(
                select(
                    outbox_messages.c.status,
                    outbox_messages.c.attempts,
                    outbox_messages.c.next_attempt,
                    outbox_messages.c.last_error,
                    outbox_messages.c.link_nonce,
                    activation_links.c.expires,
                )
                .join(activation_links, activation_links.c.pk == outbox_messages.c.link_pk)
                .order_by(outbox_messages.c.pk)
            ).all()
        )

    try:
        now = now_us()
        claimed = await db.write(outbox.claim, now=now, lease_us=1_000_000, limit=10)
        assert [c.attempts for c in claimed] == [1, 1, 1, 1]
        assert [c.pk for c in claimed] == sorted(c.pk for c in claimed)
        assert await db.write(outbox.claim, now=now, lease_us=1_000_000, limit=10) == []
        sent, failed, retried, cancelled = claimed

        def cancel_one(conn: Connection) -> int:
            user_pk = conn.execute(
                select(outbox_messages.c.user_pk).where(outbox_messages.c.pk == cancelled.pk)
            ).scalar_one()
            return outbox.cancel(conn, user_pk=user_pk, purpose=outbox.ACTIVATION, reason="gone")

        assert await db.write(cancel_one) == 1
        results = [
            outbox.Result(sent.pk, 1),
            outbox.Result(failed.pk, 1, "550 no such user", permanent=True),
            outbox.Result(retried.pk, 1, "SMTP server unavailable"),
            outbox.Result(cancelled.pk, 1),
        ]
        await db.write(outbox.record, results, now=now, policy=policy)
        rows = await db.read(state)
    finally:
        await db.close()
    # (status, attempts, last_error, link_nonce, link expires); next_attempt for the retry only
    outcome = [(r[0], r[1], r[3], r[4], r[5]) for r in rows]
    assert outcome[0] == ("sent", 1, None, None, now + 7_000_000)
    assert outcome[1] == ("failed", 1, "550 no such user", None, None)
    assert outcome[2] == ("queued", 1, "SMTP server unavailable", rows[2][4], None)
    assert rows[2][4], "a message to retry keeps its nonce"
    assert rows[2][2] == now + 1_000_000
    assert outcome[3] == ("cancelled", 1, "gone", None, None)


# --------------------------------------------------------------------------- a served hub


class _DiskFullAfterFirst(Inbox):
    """Accepts every message; the first one also fills the serving hub's disk for a second.

    RLIMIT_FSIZE of 1 byte on the server process: every write into the database file (and its
    WAL) fails as on a full disk, so the sender cannot record what it just delivered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pid: int | None = None
        self._limit = resource.getrlimit(resource.RLIMIT_FSIZE)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.messages) == 1 and self.pid is not None:
            pid = self.pid
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, self._limit[1]))
            asyncio.get_running_loop().call_later(
                1.0, resource.prlimit, pid, resource.RLIMIT_FSIZE, self._limit
            )
        return answer


def _served_hub(tmp_path: Path, smtp_port: int, poll_ms: str) -> HubProcess:
    return HubProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
        tmp_path / "server",
        smtp_host="127.0.0.1",
        smtp_port=str(smtp_port),
        smtp_security="none",
        mail_poll_ms=poll_ms,
        mail_lease_ms="1500",
        mail_retry_base_ms="100",
    )


async def _create_one(hub: HubProcess) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(
            f"{hub.tenant_url}/Users",
            json={
                "schemas": [USER_URN],
                "userName": "once@example.com",
                "emails": [{"value": "once@example.com", "type": "work", "primary": True}],
            },
            headers={"Authorization": f"Bearer {hub.token}", "Content-Type": SCIM_JSON},
        )
    assert created.status_code == 201, created.text


@asynccontextmanager
async def _first_email_unrecorded(
    tmp_path: Path, smtp_port: int, poll_ms: str
) -> AsyncIterator[tuple[_DiskFullAfterFirst, HubProcess]]:
    """A served hub whose first activation email went out while its database was full."""
    server = SmtpServer(smtp_port)
    inbox = server.inbox = _DiskFullAfterFirst()
    hub = _served_hub(tmp_path, smtp_port, poll_ms=poll_ms)
    try:
        hub.prepare()
        server.start()
        await asyncio.to_thread(hub.start)
        assert hub.process is not None
        inbox.pid = hub.process.pid
        await _create_one(hub)
        await eventually(lambda: inbox.messages, within=10)
        yield inbox, hub
    finally:
        hub.stop()
        server.stop()


def _assert_sent_once(inbox: _DiskFullAfterFirst, hub: HubProcess) -> None:
    ids = [str(m["Message-ID"]) for m in inbox.messages]
    assert ids == ids[:1], f"sent {len(ids)} times\n{hub.stderr_tail(4000)}"
    rows = query(hub.database_url, "SELECT status, attempts FROM outbox_messages")
    assert rows == [("sent", 1)], rows


async def test_an_outcome_the_database_refused_is_recorded_later_not_sent_again(
    tmp_path: Path, smtp_port: int
) -> None:
    """A delivery whose outcome cannot be written (disk full, database busy) is not repeated.

    The server lives on, so it still knows the message went out: it records that once the
    database takes writes again, before it claims anything, instead of letting the lease lapse
    and sending the email a second time (a duplicate only a crash may cause).
    """
    async with _first_email_unrecorded(tmp_path, smtp_port, poll_ms="100") as (inbox, hub):
        # The disk is back after 1 s; the lease (1.5 s) has lapsed by 4 s.
        await asyncio.sleep(4.0)
        _assert_sent_once(inbox, hub)


async def test_an_outcome_not_yet_recorded_is_recorded_by_a_graceful_stop(
    tmp_path: Path, smtp_port: int
) -> None:
    """The same, when the server is stopped (SIGTERM) before its sender's next round: the stop
    records what went out, so the restarted server does not send it again."""
    # No sender round before the stop.
    async with _first_email_unrecorded(tmp_path, smtp_port, poll_ms="60000") as (inbox, hub):
        await asyncio.sleep(1.5)  # the disk is back, the sender asleep
        await asyncio.to_thread(hub.stop)
        await asyncio.to_thread(hub.start)
        await asyncio.sleep(2.5)  # past the lease of the first attempt
        _assert_sent_once(inbox, hub)

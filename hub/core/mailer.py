"""Composing activation emails and delivering them: SMTP (aiosmtplib) or `.eml` files.

With `smtp_host` set, messages go to that server (plain, STARTTLS or implicit TLS, optional
credentials), a batch over at most `smtp_connections` connections that each send many messages.
Without it — the embedded default — each message is written as `{outbox_dir}/{message id}.eml`,
so `make run` needs no mail server and a developer can open the invitation. Both deliveries are
idempotent per Message-ID: a resend after a crash carries the same Message-ID (SMTP) or overwrites
the same file.

An activation email is `multipart/alternative` (plain text, then HTML), both parts UTF-8 in base64,
built as bytes from a template rendered once per sender (`Composer`): the standard library's
`email` package re-parses and re-folds every header and costed more CPU than the rest of a
provisioning request. Header values are made safe here: the subject (the workspace name) is
RFC 2047-encoded when it is not ASCII and never carries a line break; a non-ASCII display name in
`mail_from` is RFC 2047-encoded; a recipient with a control character is refused.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import html
import os
import re
import secrets
import time
from collections.abc import Sequence
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any, Final, Protocol

import aiosmtplib
import msgspec
import structlog

from hub.core.filewriter import FileWriter
from hub.logging import log_info
from hub.settings import Settings

log = structlog.get_logger("hub.mail")

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9@._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Line breaks (C0 and C1 controls, U+2028, U+2029) and the bidi embedding, override and isolate
#: controls (U+202A-U+202E, U+2066-U+2069) that `one_line` takes out of what an IdP sent.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_BIDI_CONTROLS = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
#: RFC 5322 §2.1.1: lines SHOULD be at most 78 characters.
_LINE: Final = 78
#: RFC 2047 §2: an encoded-word is at most 75 characters; "=?utf-8?b?" + "?=" leave 63 for
#: base64, i.e. 45 bytes of UTF-8 (47 would be 64 characters).
_WORD_BYTES: Final = 45


class DeliveryError(Exception):
    """A message could not be delivered; `permanent` ones are not retried (e.g. 5xx refusals)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ActivationContent(msgspec.Struct, frozen=True):
    """What an activation email says: who it is for, from which workspace, and the link."""

    name: str
    workspace: str
    link: str


class Email(msgspec.Struct, frozen=True):
    """A composed message: its Message-ID, SMTP envelope and RFC 5322 bytes (LF line ends)."""

    msg_id: str
    sender: str
    recipient: str
    data: bytes


def message_id(outbox_id: str, mail_from: str) -> str:
    """The Message-ID of an outbox message: derived from its id, so every resend carries it."""
    domain = mail_from.rsplit("@", 1)[-1].strip(" >") or "scim-hub.invalid"
    return f"<{outbox_id}@{domain}>"


# --------------------------------------------------------------------------- composing


def encode_header_text(text: str, *, offset: int) -> str:
    """An unstructured header value (RFC 5322 §2.2.1), folded, without line breaks of its own.

    ASCII text is folded at spaces; other text becomes RFC 2047 "B" encoded-words of whole
    characters, one per line. `offset` is the length of the header name and ": " before it.
    """
    text = _CONTROL.sub(" ", text)
    if text.isascii():
        return _fold(text, offset)
    # The first word shares its line with the header name.
    budget = max(3, min(_WORD_BYTES, (_LINE - offset - len("=?utf-8?b??=")) // 4 * 3))
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode())
        if chunk and size + width > budget:
            words.append(_encoded_word("".join(chunk)))
            chunk, size, budget = [], 0, _WORD_BYTES
        chunk.append(char)
        size += width
    words.append(_encoded_word("".join(chunk)))
    return "\n ".join(words)


def one_line(text: str) -> str:
    """A name as the hub shows it in its own sentences: one line, in its own reading order.

    An IdP's value is a single line of text, but nothing stops it holding line breaks (which
    would write paragraphs of their own into the hub's email) or a bidi override such as U+202E
    (which would show the hub's words after it backwards, Unicode TR9 §2.2). Runs of control
    characters and line separators become one space; the bidi embedding, override and isolate
    controls are dropped (an Arabic or Hebrew name needs none of them to read right).
    """
    if text.isascii() and text.isprintable():
        return text.strip()  # what nearly every name is: nothing for the expressions to take
    return _BREAKS.sub(" ", _BIDI_CONTROLS.sub("", text)).strip()


def _encoded_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _fold(text: str, offset: int) -> str:
    """Fold at spaces so lines stay within 78 characters where the words allow it."""
    if offset + len(text) <= _LINE:
        return text
    lines: list[str] = []
    line: list[str] = []
    width = offset
    for word in text.split(" "):
        extra = len(word) + (1 if line else 0)
        if line and width + extra > _LINE:
            lines.append(" ".join(line))
            line, width = [word], 1 + len(word)  # the continuation line starts with a space
        else:
            line.append(word)
            width += extra
    lines.append(" ".join(line))
    return "\n ".join(lines)


def _base64_body(text: str) -> str:
    # 76-character lines, as RFC 2045 §6.8 asks, each ending in a newline.
    return base64.encodebytes(text.encode()).decode()


@functools.lru_cache(maxsize=256)
def _subject(workspace: str) -> str:
    """The activation email's Subject, encoded once per workspace name."""
    return encode_header_text(f"Activate your {workspace} business card", offset=len("Subject: "))


@functools.cache
def _composer(mail_from: str) -> Composer:
    return Composer(mail_from)


def activation_email(
    content: ActivationContent, *, recipient: str, mail_from: str, msg_id: str
) -> Email:
    """Compose the activation email: plain text with a simple HTML alternative.

    Raises:
        DeliveryError: (permanent) the recipient is not a usable address.
    """
    return _composer(mail_from).activation(content, recipient=recipient, msg_id=msg_id)


class Composer:
    """Activation emails for one sender, from headers and parts rendered once."""

    def __init__(self, mail_from: str) -> None:
        name, address = parseaddr(mail_from)
        #: the envelope sender (SMTP MAIL FROM)
        self.sender = address or mail_from.strip()
        from_header = (
            _CONTROL.sub(" ", mail_from.strip())
            if mail_from.isascii()
            else formataddr((name, address), charset="utf-8")
        )
        self._from = f"From: {from_header}\n"
        self._part = 'Content-Type: text/{}; charset="utf-8"\nMIME-Version: 1.0\n'
        self._part += "Content-Transfer-Encoding: base64\n\n"
        self._date = (0, "")

    def _date_header(self) -> str:
        # RFC 5322 dates have second precision: format each second once.
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, formatdate(second, usegmt=True))
        return self._date[1]

    def activation(self, content: ActivationContent, *, recipient: str, msg_id: str) -> Email:
        """The activation email of `content` to `recipient`, with Message-ID `msg_id`.

        Raises:
            DeliveryError: (permanent) the recipient is not a usable address.
        """
        if not recipient.strip() or _CONTROL.search(recipient):
            raise DeliveryError("invalid email address", permanent=True)
        name, workspace = one_line(content.name), one_line(content.workspace)
        text = (
            f"Hello {name},\n\n"
            f"{workspace} has created a digital business card for you.\n"
            f"Activate your account and see your card here:\n\n{content.link}\n\n"
            "The link works once and expires; ask your administrator for a new one if needed.\n"
        )
        name, workspace, link = (html.escape(v) for v in (name, workspace, content.link))
        page = (
            "<!doctype html><html><body>"
            f"<p>Hello {name},</p>"
            f"<p>{workspace} has created a digital business card for you.</p>"
            f'<p><a href="{link}">Activate your account</a></p>'
            "<p>The link works once and expires; ask your administrator for a new one if "
            "needed.</p></body></html>"
        )
        subject = _subject(content.workspace)
        # "=_" never occurs in base64 text, so the boundary cannot occur in a part.
        boundary = f"=_{secrets.token_hex(16)}"
        data = (
            f'Content-Type: multipart/alternative;\n boundary="{boundary}"\n'
            "MIME-Version: 1.0\n"
            f"Subject: {subject}\n"
            f"{self._from}"
            f"To: {recipient}\n"
            f"Message-ID: {msg_id}\n"
            f"Date: {self._date_header()}\n"
            "Auto-Submitted: auto-generated\n\n"
            f"--{boundary}\n{self._part.format('plain')}{_base64_body(text)}\n"
            f"--{boundary}\n{self._part.format('html')}{_base64_body(page)}\n"
            f"--{boundary}--\n"
        )
        # A non-ASCII address stays UTF-8 (RFC 6532); everything else here is ASCII.
        return Email(msg_id, self.sender, recipient, data.encode())


# --------------------------------------------------------------------------- delivering


class Mailer(Protocol):
    """Where composed messages go."""

    async def deliver(self, messages: Sequence[Email]) -> list[DeliveryError | None]:
        """Deliver a batch; per message, None if it went out or the error that stopped it."""
        ...

    async def close(self) -> None:
        """Release what delivery holds (connections, processes); called once, at shutdown."""
        ...


#: Messages one SMTP connection carries before it is closed and a fresh one opened: many servers
#: end a session after some number of messages (Postfix's `smtpd_client_message_rate_limit`,
#: providers' per-session caps), and a planned reconnect costs less than a refused message.
MESSAGES_PER_CONNECTION: Final = 100
#: QUIT only closes a session whose outcomes are already known: do not wait long for its answer.
_QUIT_TIMEOUT: Final = 5.0
#: "Service not available, closing transmission channel" (RFC 5321 §3.8): about the session, not
#: the message, which goes out again on a new connection.
_CLOSING: Final = 421
_LATE: Final = "not started: the SMTP server was too slow for this batch's lease"


class _Dropped(Exception):
    """The connection went away and the message in hand was not accepted.

    `maybe_sent`: it dropped while the message's DATA was unanswered — the server may have
    accepted it.
    """

    def __init__(self, error: DeliveryError, *, maybe_sent: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.maybe_sent = maybe_sent


class _Batch:
    """A batch shared by its connections: what is left to send and what became of each."""

    def __init__(self, messages: Sequence[Email], *, seconds: float) -> None:
        self.messages = messages
        #: no message is started after this (`time.monotonic()`)
        self.deadline = time.monotonic() + seconds
        self.outcomes: list[DeliveryError | None] = [None] * len(messages)
        #: indexes not yet taken by a connection, in order
        self.todo = collections.deque(range(len(messages)))
        #: why connections stopped before the batch was done
        self.stopped: list[DeliveryError] = []
        self._unanswered: set[int] = set()

    def dropped(self, index: int, lost: _Dropped) -> None:
        """A connection dropped with message `index` in hand: it goes out on the next one.

        A connection that drops twice while the same message's DATA is unanswered looks like
        that message is the trouble: it is left to the outbox's retries, so it cannot take the
        rest of the batch down with it.
        """
        if lost.maybe_sent and index in self._unanswered:
            self.outcomes[index] = lost.error
            return
        if lost.maybe_sent:
            self._unanswered.add(index)
        self.todo.appendleft(index)


class SmtpMailer:
    """Delivery to an SMTP server (aiosmtplib) over a few connections, reused within a batch.

    A batch is spread over at most `smtp_connections` connections, each opened once (TLS or
    STARTTLS per `smtp_security`, login when `smtp_username` is set) and sending one message after
    another (MAIL FROM / RCPT TO / DATA) from a queue the connections share, so a connection that
    cannot be opened leaves its share to the others. Per message, as `send` describes:

    * accepted (250 to its DATA) → None; nothing else counts as sent;
    * refused by the server (RCPT, MAIL or DATA answered 4xx/5xx) → a `DeliveryError`, permanent
      only for 5xx; the session is reset (RSET) and goes on with the next message;
    * a connection that drops (disconnect, timeout, OSError, 421) is opened again and the
      message in hand goes out on the new one — with the same Message-ID, so a message whose DATA
      was sent but never answered may arrive twice (at-least-once, as the outbox promises). A
      message in hand at a second drop is left to the outbox's retries. A connection that got
      answers before it dropped (a server ending sessions after N messages, an idle timeout) is
      always replaced; two in a row without any answer, a connection that cannot be opened, or
      failed authentication (temporary: an operator's fix) end that connection's share;
    * messages no connection could send get the error that stopped the last one, always
      temporary: the outbox retries them with backoff.

    A connection carries at most `messages_per_connection` messages, then QUITs and is opened
    again. Connections last one batch. No message is started once half the outbox lease
    (`mail_lease_ms`) has gone by: the rest are retried later rather than risk another sender
    claiming them while they are still going out.
    """

    def __init__(
        self, settings: Settings, *, messages_per_connection: int = MESSAGES_PER_CONNECTION
    ) -> None:
        self._options: dict[str, Any] = {
            "hostname": settings.smtp_host,
            "port": settings.smtp_port,
            "username": settings.smtp_username or None,
            "password": settings.smtp_password or None,
            "use_tls": settings.smtp_security == "tls",
            # True: refuse to send in clear text if the server offers no STARTTLS.
            "start_tls": settings.smtp_security == "starttls",
            "timeout": settings.smtp_timeout_seconds,
        }
        self._connections = settings.smtp_connections
        self._per_connection = max(1, messages_per_connection)
        self._quit_timeout = min(_QUIT_TIMEOUT, float(settings.smtp_timeout_seconds))
        # Messages go out one after another on a connection: a slow server must not keep a
        # batch past its lease, or another sender would claim and send it again.
        self._batch_seconds = settings.mail_lease_ms / 2000

    async def deliver(self, messages: Sequence[Email]) -> list[DeliveryError | None]:
        """Send the batch over at most `smtp_connections` connections; outcomes in order."""
        batch = _Batch(messages, seconds=self._batch_seconds)
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._connections, len(messages))):
                group.create_task(self._connection(batch))
        # Left over only when every connection stopped early, each with an error.
        for index in batch.todo:
            batch.outcomes[index] = DeliveryError(str(batch.stopped[-1]))
        return batch.outcomes

    async def _connection(self, batch: _Batch) -> None:
        """One connection's loop: send the batch's next message until none is left.

        The connection is opened again when it drops, as long as the previous one got an answer
        for at least one message (a server closing sessions after N messages, or an idle
        timeout); two connections in a row without any answer end the loop.
        """
        client: aiosmtplib.SMTP | None = None
        answered = carried = 0
        spare = 1  # connections that may drop before answering anything
        try:
            while batch.todo:
                if time.monotonic() >= batch.deadline:
                    batch.stopped.append(DeliveryError(_LATE))
                    break
                if client is None:
                    try:
                        client = await self._open()
                    except DeliveryError as exc:
                        batch.stopped.append(exc)
                        return
                    answered = carried = 0
                    if not batch.todo:
                        break  # the other connections took the rest while this one opened
                index = batch.todo.popleft()
                lost: DeliveryError | None = None
                try:
                    await self._send_on(client, batch.messages[index])
                except _Dropped as exc:
                    client.close()
                    lost = exc.error
                    batch.dropped(index, exc)
                except DeliveryError as exc:
                    batch.outcomes[index] = exc
                    answered += 1
                else:
                    answered += 1
                if client.is_connected:
                    carried += 1
                    if carried >= self._per_connection:
                        await self._quit(client)
                        client = None
                    continue
                # The server closed the session (after answering, or without an answer).
                client.close()
                client = None
                if answered:
                    spare = 1
                elif spare:
                    spare -= 1
                else:
                    batch.stopped.append(lost or DeliveryError("SMTP server closed the connection"))
                    return
                log.info("smtp connection closed by the server, opening another", sent=answered)
            if client is not None:
                await self._quit(client)
                client = None
        finally:
            if client is not None:  # cancelled, or a bug: do not leave the socket open
                client.close()

    async def _open(self) -> aiosmtplib.SMTP:
        """Connect, secure and log in.

        Raises:
            DeliveryError: (temporary) the server is unreachable, refuses the session or the
                credentials; an operator fixes these, then the outbox's retries go through.
        """
        client = aiosmtplib.SMTP(**self._options)
        try:
            await client.connect()
            if client.last_ehlo_response is None:
                # Each message's SMTPUTF8 check reads the extensions EHLO lists.
                await _hello(client)
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise DeliveryError(f"SMTP server unavailable: {exc}") from exc
        return client

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.quit(timeout=self._quit_timeout)
        except (aiosmtplib.SMTPException, OSError):
            pass  # every outcome is known; the server may already have closed the session
        finally:
            client.close()

    async def _send_on(self, client: aiosmtplib.SMTP, message: Email) -> None:
        """Run one mail transaction (MAIL FROM, RCPT TO, DATA) on an open connection.

        Raises:
            DeliveryError: the server answered with a refusal (permanent when 5xx); the session
                has been reset (RSET) for the next message.
            _Dropped: the connection went away without the message being accepted.
        """
        # RFC 6531: a non-ASCII address needs a server that says SMTPUTF8.
        utf8 = not f"{message.sender}{message.recipient}".isascii()
        if utf8 and not client.supports_extension("smtputf8"):
            raise DeliveryError(
                "the SMTP server does not accept non-ASCII addresses (SMTPUTF8)", permanent=True
            )
        encoding = "utf-8" if utf8 else "ascii"
        in_data = False
        try:
            await client.mail(
                message.sender, options=["SMTPUTF8"] if utf8 else None, encoding=encoding
            )
            await client.rcpt(message.recipient, encoding=encoding)
            in_data = True
            await client.data(message.data)
        except aiosmtplib.SMTPResponseException as exc:
            refused = isinstance(exc, aiosmtplib.SMTPRecipientRefused)
            text = (
                f"recipient refused: [{exc.code}]" if refused else f"SMTP {exc.code}: {exc.message}"
            )
            error = DeliveryError(text, permanent=exc.code >= 500)
            if exc.code == _CLOSING:  # aiosmtplib has closed the connection
                raise _Dropped(error, maybe_sent=False) from exc
            await _reset(client)
            raise error from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = DeliveryError(f"SMTP server unavailable: {exc}")
            raise _Dropped(error, maybe_sent=in_data) from exc
        except ValueError as exc:
            # aiosmtplib refuses an address it cannot put on a command line, possibly after
            # MAIL FROM went out.
            await _reset(client)
            raise DeliveryError(f"invalid email address: {exc}", permanent=True) from exc

    async def send(self, message: Email) -> None:
        """Send one message over its own connection.

        A 5xx answer to the message (MAIL, RCPT, DATA) is permanent; anything else — the server
        unreachable, failed authentication, 4xx — is worth retrying.

        Raises:
            DeliveryError: the server could not be reached or refused the message.
        """
        [outcome] = await self.deliver([message])
        if outcome is not None:
            raise outcome

    async def close(self) -> None:
        """Nothing to release: each batch opens and closes its own connections."""


async def _hello(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()  # an RFC 821 server: no extensions


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()  # an unknown session state: the next message gets a new connection


class FileMailer:
    """The embedded default: write each message to `{outbox_dir}/{message id}.eml`.

    The files are written by a child process (`hub.core.filewriter`), a batch per hand-off, so
    the file system's work neither runs on the event loop nor takes turns with it for the GIL.
    """

    def __init__(self, outbox_dir: str) -> None:
        self.directory = Path(outbox_dir)
        self._folder = str(self.directory)
        self._writer = FileWriter()

    def path_for(self, msg_id: str) -> Path:
        """The file a message with this Message-ID is written to."""
        return Path(self._file_for(msg_id))

    def _file_for(self, msg_id: str) -> str:
        return os.path.join(self._folder, _UNSAFE_FILENAME.sub("_", msg_id.strip("<>")) + ".eml")

    async def deliver(self, messages: Sequence[Email]) -> list[DeliveryError | None]:
        """Write the batch's files through the writer process, in one hand-off.

        A message whose file cannot be written gets a (retryable) `DeliveryError`; the writer
        makes the directory when it is missing.
        """
        paths = [self._file_for(message.msg_id) for message in messages]
        try:
            written = await self._writer.write(
                [(path, message.data) for path, message in zip(paths, messages, strict=True)]
            )
        except OSError as exc:  # the writer process could not be started or stopped answering
            error = DeliveryError(f"cannot write to {self.directory}: {exc}")
            return [error for _ in messages]
        outcomes: list[DeliveryError | None] = []
        for message, path, problem in zip(messages, paths, written, strict=True):
            if problem is not None:
                outcomes.append(DeliveryError(f"cannot write to {self.directory}: {problem}"))
            else:
                log_info(log, "email written", file=path, message_id=message.msg_id)
                outcomes.append(None)
        return outcomes

    async def close(self) -> None:
        """Stop the writer process."""
        await self._writer.close()


def mailer_for(settings: Settings) -> Mailer:
    """SMTP when `smtp_host` is set, else `.eml` files under `outbox_dir`."""
    if settings.smtp_host:
        return SmtpMailer(settings)
    return FileMailer(settings.outbox_dir)

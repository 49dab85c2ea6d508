"""Composing activation emails and delivering them: SMTP (aiosmtplib) or `.eml` files.

With `smtp_host` set, messages go to that server (plain, STARTTLS or implicit TLS, optional
credentials). Without it — the embedded default — each message is written as
`{outbox_dir}/{message id}.eml`, so `make run` needs no mail server and a developer can open the
invitation. Both deliveries are idempotent per Message-ID: a resend after a crash carries the
same Message-ID (SMTP) or overwrites the same file.

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

from hub.settings import Settings

log = structlog.get_logger("hub.mail")

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9@._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
        text = (
            f"Hello {content.name},\n\n"
            f"{content.workspace} has created a digital business card for you.\n"
            f"Activate your account and see your card here:\n\n{content.link}\n\n"
            "The link works once and expires; ask your administrator for a new one if needed.\n"
        )
        name, workspace, link = (
            html.escape(v) for v in (content.name, content.workspace, content.link)
        )
        page = (
            "<!doctype html><html><body>"
            f"<p>Hello {name},</p>"
            f"<p>{workspace} has created a digital business card for you.</p>"
            f'<p><a href="{link}">Activate your account</a></p>'
            "<p>The link works once and expires; ask your administrator for a new one if "
            "needed.</p></body></html>"
        )
        subject = encode_header_text(
            f"Activate your {content.workspace} business card", offset=len("Subject: ")
        )
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


class SmtpMailer:
    """Delivery to an SMTP server with aiosmtplib, one connection per message."""

    def __init__(self, settings: Settings) -> None:
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

    async def deliver(self, messages: Sequence[Email]) -> list[DeliveryError | None]:
        """Send every message, concurrently; see `send` for what counts as permanent."""
        return list(await asyncio.gather(*(self._outcome(m) for m in messages)))

    async def _outcome(self, message: Email) -> DeliveryError | None:
        try:
            await self.send(message)
        except DeliveryError as exc:
            return exc
        return None

    async def send(self, message: Email) -> None:
        """Send one message; a 5xx answer is permanent, anything else is worth retrying.

        Raises:
            DeliveryError: the server could not be reached or refused the message.
        """
        try:
            await aiosmtplib.send(
                message.data,
                sender=message.sender,
                recipients=[message.recipient],
                **self._options,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(
                f"recipient refused: {codes}", permanent=all(c >= 500 for c in codes)
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # Authentication failures are configuration problems an operator fixes: retry.
            permanent = exc.code >= 500 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError)
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", permanent=permanent) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP server unavailable: {exc}") from exc


class FileMailer:
    """The embedded default: write each message to `{outbox_dir}/{message id}.eml`."""

    def __init__(self, outbox_dir: str) -> None:
        self.directory = Path(outbox_dir)
        self._folder = str(self.directory)
        self._made = False

    def path_for(self, msg_id: str) -> Path:
        """The file a message with this Message-ID is written to."""
        return Path(self._file_for(msg_id))

    def _file_for(self, msg_id: str) -> str:
        return os.path.join(self._folder, _UNSAFE_FILENAME.sub("_", msg_id.strip("<>")) + ".eml")

    def _write(self, message: Email) -> str:
        path = self._file_for(message.msg_id)
        partial = path + ".partial"
        with open(partial, "wb") as file:
            file.write(message.data)
        # Atomic rename: a reader never sees half a message, a resend replaces it whole.
        os.replace(partial, path)
        return path

    def _write_all(self, messages: Sequence[Email]) -> list[str | OSError]:
        if not self._made:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._made = True
        written: list[str | OSError] = []
        for message in messages:
            try:
                try:
                    written.append(self._write(message))
                except FileNotFoundError:  # the directory went away: make it again
                    self.directory.mkdir(parents=True, exist_ok=True)
                    written.append(self._write(message))
            except OSError as exc:
                written.append(exc)
        return written

    async def deliver(self, messages: Sequence[Email]) -> list[DeliveryError | None]:
        """Write the batch's files in one hop off the event loop.

        A message whose file cannot be written gets a (retryable) `DeliveryError`.
        """
        try:
            written = await asyncio.to_thread(self._write_all, messages)
        except OSError as exc:  # the directory cannot be made
            error = DeliveryError(f"cannot write to {self.directory}: {exc}")
            return [error for _ in messages]
        outcomes: list[DeliveryError | None] = []
        for message, path in zip(messages, written, strict=True):
            if isinstance(path, OSError):
                outcomes.append(DeliveryError(f"cannot write to {self.directory}: {path}"))
            else:
                log.info("email written", file=path, message_id=message.msg_id)
                outcomes.append(None)
        return outcomes


def mailer_for(settings: Settings) -> Mailer:
    """SMTP when `smtp_host` is set, else `.eml` files under `outbox_dir`."""
    if settings.smtp_host:
        return SmtpMailer(settings)
    return FileMailer(settings.outbox_dir)

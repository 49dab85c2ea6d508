"""Composing activation emails and delivering them: SMTP (aiosmtplib) or `.eml` files.

With `smtp_host` set, messages go to that server (plain, STARTTLS or implicit TLS, optional
credentials). Without it — the embedded default — each message is written as
`{outbox_dir}/{message id}.eml`, so `make run` needs no mail server and a developer can open the
invitation. Both deliveries are idempotent per Message-ID: a resend after a crash carries the
same Message-ID (SMTP) or overwrites the same file.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import msgspec
import structlog

from hub.settings import Settings

log = structlog.get_logger("hub.mail")

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9@._-]")


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


def message_id(outbox_id: str, mail_from: str) -> str:
    """The Message-ID of an outbox message: derived from its id, so every resend carries it."""
    domain = mail_from.rsplit("@", 1)[-1].strip(" >") or "scim-hub.invalid"
    return f"<{outbox_id}@{domain}>"


def activation_email(
    content: ActivationContent, *, recipient: str, mail_from: str, msg_id: str
) -> Message:
    """Compose the activation email: plain text with a simple HTML alternative.

    Built with the compat32 MIME classes: the modern header registry parses every header it is
    given and cost more CPU than the rest of a provisioning request.
    """
    message = MIMEMultipart("alternative")
    message["Subject"] = Header(
        f"Activate your {content.workspace} business card", "utf-8"
    ).encode()
    message["From"] = mail_from
    message["To"] = recipient
    message["Message-ID"] = msg_id
    message["Date"] = formatdate(usegmt=True)
    message["Auto-Submitted"] = "auto-generated"
    text = (
        f"Hello {content.name},\n\n"
        f"{content.workspace} has created a digital business card for you.\n"
        f"Activate your account and see your card here:\n\n{content.link}\n\n"
        "The link works once and expires; ask your administrator for a new one if needed.\n"
    )
    message.attach(MIMEText(text, "plain", "utf-8"))
    name, workspace, link = (
        html.escape(v) for v in (content.name, content.workspace, content.link)
    )
    page = (
        "<!doctype html><html><body>"
        f"<p>Hello {name},</p>"
        f"<p>{workspace} has created a digital business card for you.</p>"
        f'<p><a href="{link}">Activate your account</a></p>'
        "<p>The link works once and expires; ask your administrator for a new one if needed.</p>"
        "</body></html>"
    )
    message.attach(MIMEText(page, "html", "utf-8"))
    return message


class Mailer(Protocol):
    """Where composed messages go."""

    async def deliver(self, message: Message) -> None:
        """Deliver one message or raise `DeliveryError`."""
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

    async def deliver(self, message: Message) -> None:
        """Send `message`; a 5xx answer is permanent, anything else is worth retrying.

        Raises:
            DeliveryError: the server could not be reached or refused the message.
        """
        try:
            await aiosmtplib.send(message, **self._options)
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

    def path_for(self, msg_id: str) -> Path:
        """The file a message with this Message-ID is written to."""
        return self.directory / (_UNSAFE_FILENAME.sub("_", msg_id.strip("<>")) + ".eml")

    def _write(self, message: Message) -> Path:
        path = self.path_for(str(message["Message-ID"]))
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".eml.partial")
        partial.write_bytes(message.as_bytes())
        # Atomic rename: a reader never sees half a message, a resend replaces it whole.
        os.replace(partial, path)
        return path

    async def deliver(self, message: Message) -> None:
        """Write the message file (off the event loop).

        Raises:
            DeliveryError: the directory is not writable.
        """
        try:
            path = await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise DeliveryError(f"cannot write to {self.directory}: {exc}") from exc
        log.info("email written", file=str(path), message_id=str(message["Message-ID"]))


def mailer_for(settings: Settings) -> Mailer:
    """SMTP when `smtp_host` is set, else `.eml` files under `outbox_dir`."""
    if settings.smtp_host:
        return SmtpMailer(settings)
    return FileMailer(settings.outbox_dir)

"""Storage: SQLAlchemy 2 typed models.

Rows carry an integer `pk` (compact joins, insertion order for stable paging) and a public random
`id` (UUID text, never guessable across workspaces). Every tenant-owned row carries `workspace_id`
and every query of a service is scoped by it. A resource's full SCIM document (minus `id`, `meta`
and the derived `groups`/`members`) lives in `data`, so attributes the hub does not map come back
exactly as they were sent; the columns beside it are copies kept for indexes and filters.
"""

from __future__ import annotations

from typing import Any, Final, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONDocument = JSON().with_variant(JSONB(), "postgresql")
#: The longest email key `user_emails` holds (RFC 5321 caps an address at 254 characters); a
#: longer value is not indexed, and a look-up for one reads every user instead.
EMAIL_KEY_MAX = 320


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Workspace(Base):
    """A customer tenant."""

    __tablename__ = "workspaces"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created: Mapped[int] = mapped_column(BigInteger)
    send_activation_email: Mapped[bool] = mapped_column(Boolean, default=True)
    #: SCIM requests per second allowed per token; NULL: the hub's default.
    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Admin(Base):
    """A workspace administrator; deactivating one kills every token they created."""

    __tablename__ = "admins"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("workspace_pk", "email"),)


class Connector(Base):
    """An IdP plugin enabled in a workspace; its dialect handles its requests."""

    __tablename__ = "connectors"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    idp: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[int] = mapped_column(BigInteger)
    last_request: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)  # 0005
    deleted: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # 0005: soft delete
    __table_args__ = (UniqueConstraint("workspace_pk", "name"),)


class Token(Base):
    """A bearer secret of one connector, stored only as its SHA-256 digest."""

    __tablename__ = "tokens"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    connector_pk: Mapped[int] = mapped_column(ForeignKey("connectors.pk", ondelete="CASCADE"))
    admin_pk: Mapped[int] = mapped_column(ForeignKey("admins.pk", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created: Mapped[int] = mapped_column(BigInteger)
    last_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AdminKey(Base):
    """An admin API key, stored only as its SHA-256 digest; it dies with its admin."""

    __tablename__ = "admin_keys"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    admin_pk: Mapped[int] = mapped_column(ForeignKey("admins.pk", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class User(Base):
    """A provisioned person. DELETE keeps the row (`deleted`), so nothing is ever erased."""

    __tablename__ = "users"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    connector_pk: Mapped[int | None] = mapped_column(
        ForeignKey("connectors.pk", ondelete="SET NULL"), nullable=True
    )
    user_name: Mapped[str] = mapped_column(String(512))
    # userName is unique per workspace case-insensitively (RFC 7643 §4.1.1 caseExact=false).
    user_name_key: Mapped[str] = mapped_column(String(512))
    external_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # NULL when a client removed `active` (RFC 7644 §3.5.2.2); a user without it counts as active.
    active: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created: Mapped[int] = mapped_column(BigInteger)
    modified: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("workspace_pk", "user_name_key", name="uq_users_workspace_username"),
        Index("ix_users_workspace_external", "workspace_pk", "external_id"),
        Index("ix_users_workspace_pk", "workspace_pk", "deleted", "pk"),
    )


class Group(Base):
    """An IdP group; its members are users of the same workspace."""

    __tablename__ = "groups"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    connector_pk: Mapped[int | None] = mapped_column(
        ForeignKey("connectors.pk", ondelete="SET NULL"), nullable=True
    )
    display_name: Mapped[str] = mapped_column(String(512))
    display_name_key: Mapped[str] = mapped_column(String(512))
    external_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created: Mapped[int] = mapped_column(BigInteger)
    modified: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        Index("ix_groups_workspace_name", "workspace_pk", "display_name_key"),
        Index("ix_groups_workspace_external", "workspace_pk", "external_id"),
    )


class Membership(Base):
    """A user's membership of a group."""

    __tablename__ = "memberships"
    group_pk: Mapped[int] = mapped_column(
        ForeignKey("groups.pk", ondelete="CASCADE"), primary_key=True
    )
    user_pk: Mapped[int] = mapped_column(
        ForeignKey("users.pk", ondelete="CASCADE"), primary_key=True
    )
    #: `display` as the client sent it (readOnly in RFC 7643 §4.2, echoed back, never derived).
    display: Mapped[str | None] = mapped_column(String(512), nullable=True)
    __table_args__ = (Index("ix_memberships_user", "user_pk"),)


class UserEmail(Base):
    """One email address of a user, folded as the filter evaluator folds it, for look-ups.

    Every string `emails[].value` of a user's stored document, whatever its type, lowered with
    Python's `str.lower()` (emails.value is caseExact=false, RFC 7643 §4.1.2) when it is at most
    `EMAIL_KEY_MAX` characters. Written with the user in the same transaction (`hub.core.users`,
    `hub.core.seed`, migration 0014), so `emails[type eq "work"].value eq "…"` — how Entra ID
    matches users on their work email — reads a few index entries instead of every user's
    document; the filter itself is still evaluated on the users found. Unlike `user_counts`,
    no trigger keeps it: a row written into `users` by anything but those is not found by an
    email look-up.
    """

    __tablename__ = "user_emails"
    workspace_pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    value_key: Mapped[str] = mapped_column(String(EMAIL_KEY_MAX), primary_key=True)
    user_pk: Mapped[int] = mapped_column(
        ForeignKey("users.pk", ondelete="CASCADE"), primary_key=True
    )
    # WITHOUT ROWID on SQLite: the key is the row, one b-tree fewer to write per email.
    __table_args__ = (Index("ix_user_emails_user", "user_pk"), {"sqlite_with_rowid": False})


class ExtensionAttribute(Base):
    """An attribute (or sub-attribute) stored under a custom extension, for discovery.

    Written with the resource that first holds it (`hub.core.extensions`), never removed: the
    hub describes in `/Schemas` what it may return. Keys are lowered (RFC 7643 §2.1 names are
    case-insensitive); the spelling beside them is the one first sent. `sub_key` is empty for
    the attribute itself.
    """

    __tablename__ = "extension_attributes"
    workspace_pk: Mapped[int] = mapped_column(
        ForeignKey("workspaces.pk", ondelete="CASCADE"), primary_key=True
    )
    resource_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    urn_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    name_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    sub_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    urn: Mapped[str] = mapped_column(String(512))
    name: Mapped[str] = mapped_column(String(200))
    sub: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    multi_valued: Mapped[bool] = mapped_column(Boolean)
    __table_args__ = ({"sqlite_with_rowid": False},)


# Core tables for the hot paths (statements without ORM overhead).
workspaces = cast(Table, Workspace.__table__)
admins = cast(Table, Admin.__table__)
connectors = cast(Table, Connector.__table__)
tokens = cast(Table, Token.__table__)
admin_keys = cast(Table, AdminKey.__table__)
users = cast(Table, User.__table__)
user_emails = cast(Table, UserEmail.__table__)
groups = cast(Table, Group.__table__)
memberships = cast(Table, Membership.__table__)
extension_attributes = cast(Table, ExtensionAttribute.__table__)


# --------------------------------------------------------------------------- activation emails


class OwnerSession(Base):
    """A card owner's session, started by following an activation link; stored as its digest."""

    __tablename__ = "owner_sessions"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"), index=True)
    created: Mapped[int] = mapped_column(BigInteger)
    expires: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ActivationLink(Base):
    """A one-time activation link; only the digest of its public part is kept (`hub.core.links`).

    `expires` is set when its email goes out (a link nobody has received cannot expire);
    `used` marks the account activated; `invalidated` kills it (resend, deprovisioning).
    """

    __tablename__ = "activation_links"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer)
    created: Mapped[int] = mapped_column(BigInteger)
    expires: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    invalidated: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (
        UniqueConstraint("user_pk", "generation", name="uq_activation_links_user_generation"),
    )


class OutboxMessage(Base):
    """An email waiting to go out, queued in the transaction that decided to send it.

    `dedupe_key` (purpose:user:generation) makes queueing idempotent; `claimed_until` is the
    sender's lease; `payload` (names, never secrets) is what the email is rendered from at
    delivery time.
    """

    __tablename__ = "outbox_messages"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    user_pk: Mapped[int | None] = mapped_column(
        ForeignKey("users.pk", ondelete="SET NULL"), nullable=True
    )
    link_pk: Mapped[int | None] = mapped_column(
        ForeignKey("activation_links.pk", ondelete="SET NULL"), nullable=True
    )
    purpose: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(320), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    #: The activation link's nonce, needed to (re)render the email: useless without the server
    #: secret (`hub.core.links`), and cleared once the message is sent, failed or cancelled.
    link_nonce: Mapped[str | None] = mapped_column(String(100), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[int] = mapped_column(BigInteger)
    claimed_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)
    finished: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt"),
        Index("ix_outbox_workspace", "workspace_pk", "pk"),
        Index("ix_outbox_user", "user_pk"),
    )


owner_sessions = cast(Table, OwnerSession.__table__)
activation_links = cast(Table, ActivationLink.__table__)
outbox_messages = cast(Table, OutboxMessage.__table__)


# --------------------------------------------------------------------------- cards and templates


class Template(Base):
    """Shared card fields and the rule (SCIM filter over the card profile) choosing who gets them.

    `position` is the admin's order: at provisioning the first matching template applies.
    `fields` maps card field -> value.
    """

    __tablename__ = "templates"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    rule: Mapped[str | None] = mapped_column(String, nullable=True)
    position: Mapped[int] = mapped_column(Integer)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created: Mapped[int] = mapped_column(BigInteger)
    modified: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("workspace_pk", "name", name="uq_templates_workspace_name"),
        Index("ix_templates_workspace_position", "workspace_pk", "position"),
    )


class Card(Base):
    """A user's business card; inactive while its user is deprovisioned, never erased.

    `profile` holds the IdP's last profile values (plus `userName`): what template rules see.
    """

    __tablename__ = "cards"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"), unique=True)
    template_pk: Mapped[int | None] = mapped_column(
        ForeignKey("templates.pk", ondelete="SET NULL"), nullable=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    profile: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created: Mapped[int] = mapped_column(BigInteger)
    modified: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        Index("ix_cards_workspace", "workspace_pk", "active", "pk"),
        Index("ix_cards_template", "template_pk"),
    )


class CardField(Base):
    """One value on a card: where it came from, whether the owner may edit it, what it follows.

    `source` is idp / template / manual; `locked` keeps the owner out; `linked` means it follows
    its upstream (the card's template if that sets the field, else the IdP). `managed` says the
    connector maps the field and `idp_value` keeps the IdP's last value, so relinking needs no
    call to the IdP.
    """

    __tablename__ = "card_fields"
    card_pk: Mapped[int] = mapped_column(
        ForeignKey("cards.pk", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(String, nullable=True)
    source: Mapped[str] = mapped_column(String(16))
    locked: Mapped[bool] = mapped_column(Boolean)
    linked: Mapped[bool] = mapped_column(Boolean)
    managed: Mapped[bool] = mapped_column(Boolean)
    idp_value: Mapped[str | None] = mapped_column(String, nullable=True)
    # Clustered on (card, name) on SQLite: each row is written once, not in a table and an index.
    __table_args__ = ({"sqlite_with_rowid": False},)


templates = cast(Table, Template.__table__)
cards = cast(Table, Card.__table__)
card_fields = cast(Table, CardField.__table__)


class AuditRecord(Base):
    """One change made over SCIM or the admin API: who, when, which request, what changed.

    `changes` names what changed (attribute names, member ids added/removed, settings touched);
    it never holds secrets: tokens, keys and passwords are not attributes the hub stores.
    """

    __tablename__ = "audit"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    at: Mapped[int] = mapped_column(BigInteger)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(36))
    request_id: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(128))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    __table_args__ = (
        Index("ix_audit_workspace", "workspace_pk", "pk"),
        Index("ix_audit_resource", "workspace_pk", "resource_id"),
    )


audit = cast(Table, AuditRecord.__table__)


#: The first status the provisioning log counts as a failure (its `ix_activity_errors` index).
FAILURE_STATUS: Final = 400


class ActivityRecord(Base):
    """One SCIM request as the provisioning log shows it, failures included."""

    __tablename__ = "activity"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_pk: Mapped[int] = mapped_column(ForeignKey("workspaces.pk", ondelete="CASCADE"))
    connector_pk: Mapped[int | None] = mapped_column(
        ForeignKey("connectors.pk", ondelete="SET NULL"), nullable=True
    )
    at: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    operation: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_name: Mapped[str | None] = mapped_column(String(512), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    request_id: Mapped[str] = mapped_column(String(32))
    ms: Mapped[int] = mapped_column(Integer)
    __table_args__ = (
        Index("ix_activity_workspace", "workspace_pk", "pk"),
        # The user filter's look-ups (`activity.entries`): each index holds only the records
        # that have a value, the name lower-cased as the filter compares it.
        Index(
            "ix_activity_user_name",
            "workspace_pk",
            text("lower(user_name)"),
            sqlite_where=text("user_name IS NOT NULL"),
            postgresql_where=text("user_name IS NOT NULL"),
        ),
        Index(
            "ix_activity_resource_id",
            "workspace_pk",
            "resource_id",
            sqlite_where=text("resource_id IS NOT NULL"),
            postgresql_where=text("resource_id IS NOT NULL"),
        ),
        # `outcome=error`: failures are few, so only they pay for it.
        Index(
            "ix_activity_errors",
            "workspace_pk",
            "pk",
            sqlite_where=text(f"status >= {FAILURE_STATUS}"),
            postgresql_where=text(f"status >= {FAILURE_STATUS}"),
        ),
    )


activity = cast(Table, ActivityRecord.__table__)


# --------------------------------------------------------------------------- admin dashboard


class AdminCredential(Base):
    """An admin's dashboard password (argon2 hash) and their run of failed sign-ins.

    `failures` counts failed sign-ins in a row (a success resets it); from the fifth on, sign-in
    is refused until `locked_until`, a delay that doubles with each further failure.
    """

    __tablename__ = "admin_credentials"
    admin_pk: Mapped[int] = mapped_column(
        ForeignKey("admins.pk", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str] = mapped_column(String(256))
    password_set: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    locked_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AdminSession(Base):
    """A signed-in admin's dashboard session, stored as the SHA-256 digest of its cookie value.

    `csrf` is the session's CSRF secret: every form posted in the session must carry it.
    """

    __tablename__ = "admin_sessions"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    admin_pk: Mapped[int] = mapped_column(ForeignKey("admins.pk", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    expires: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


admin_credentials = cast(Table, AdminCredential.__table__)
admin_sessions = cast(Table, AdminSession.__table__)
#: Team Cards pages: keyset paging over a workspace's cards in creation order (migration 0007b).
Index("ix_cards_workspace_order", cards.c.workspace_pk, cards.c.pk)


class UserCount(Base):
    """Live (not deleted) users per workspace, kept by database triggers on `users`.

    An unfiltered list answers `totalResults` from here instead of counting a million index
    entries per page. Each workspace's count is spread over `USER_COUNT_SHARDS` rows (`pk % n`)
    so concurrent creates on PostgreSQL do not queue on one row lock; readers sum the shards.
    The triggers (migration 0011) see every write path: SCIM, seeding, restores.
    """

    __tablename__ = "user_counts"
    workspace_pk: Mapped[int] = mapped_column(
        ForeignKey("workspaces.pk", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    live: Mapped[int] = mapped_column(BigInteger)


user_counts = cast(Table, UserCount.__table__)
#: How many rows each workspace's count is spread over (the triggers hash `pk` onto them).
USER_COUNT_SHARDS = 8


class AuthStamp(Base):
    """One row: a random stamp that changes whenever anything a token's authentication reads does.

    On SQLite, triggers (migration 0023) give it a new random value on every insert, update or
    delete of `tokens`, `connectors`, `admins` and `workspaces`, whoever writes: so a connection
    that remembers a token's caller with the stamp it read knows, reading the stamp again, that
    the caller is still what the rows say (`hub.core.tokens.authenticate_cached`). PostgreSQL
    reads the token's rows on every request: there the table has no row and no trigger.
    """

    __tablename__ = "auth_stamp"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    stamp: Mapped[bytes] = mapped_column(LargeBinary)


auth_stamp = cast(Table, AuthStamp.__table__)

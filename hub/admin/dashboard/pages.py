"""The dashboard's pages and their forms, on the same core services as the admin API.

Every page is one unit of work (`run_signed_in`); every form posts back with the session's CSRF
token and answers with a redirect to the page and a flash message (Post/Redirect/Get), except a
new token, whose secret is rendered once into the answer itself and stored nowhere.

* Integrations  ``/admin/integrations``  connectors, tenant URL, tokens, enable/disable, new ones
* Security      ``/admin/security``      every unrevoked token, dead ones with the reason; revoke
* Card Settings ``/admin/card-settings`` activation-email toggle, templates, rule preview
* Team Cards    ``/admin/team-cards``    seats, search/filter/paging, card editor, emails
* Activity      ``/admin/activity``      the provisioning log, filterable
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from litestar import get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect, Response, Template
from sqlalchemy import Connection

from hub.admin.dashboard.web import (
    PREFIX,
    Req,
    form_of,
    hub_of,
    list_field,
    page,
    redirect,
    run_signed_in,
    text_field,
)
from hub.core import activation, activity, cards, connectors, templates, tokens, users
from hub.core import team_cards as team_cards_service
from hub.core.admins import AdminCaller
from hub.core.errors import InvalidFilter, InvalidValue, ScimError
from hub.core.templates import CARD_FIELDS, TemplateChanges
from hub.scim.wire import NOT_JSON

PAGE_SIZE: Final = 50
ACTIVITY_PAGE: Final = 100
_INTEGRATIONS = PREFIX + "/integrations"
_SECURITY = PREFIX + "/security"
_SETTINGS = PREFIX + "/card-settings"
_CARDS = PREFIX + "/team-cards"
_ACTIVITY = PREFIX + "/activity"
_encode = msgspec.json.Encoder().encode


async def _act(
    request: Req,
    back: str,
    work: Any,
    *,
    action: str,
    resource: tuple[str, str],
    ok: str,
    form: Mapping[str, Any] | None = None,
) -> Redirect:
    """Run a form's write and go back to `back`, saying what happened (or what went wrong)."""
    form = form if form is not None else await form_of(request)
    try:
        await run_signed_in(request, work, action=action, resource=resource, form=form)
    except ScimError as exc:
        return redirect(request, back, error=exc.detail)
    return redirect(request, back, ok=ok)


# --------------------------------------------------------------------------- Integrations


def _integrations(conn: Connection, admin: AdminCaller) -> dict[str, Any]:
    infos = connectors.list_connectors(conn, admin.workspace_pk)
    return {
        "connectors": infos,
        "tokens": {
            info.id: connectors.connector_tokens(conn, admin.workspace_pk, info.id)
            for info in infos
        },
    }


def _integrations_page(
    request: Req, session: Any, data: dict[str, Any], new_token: dict[str, str] | None = None
) -> Template:
    registry = hub_of(request).registry
    idps = sorted(registry.dialects.values(), key=lambda d: d.display_name)
    names = {d.name: d.display_name for d in idps}
    return page(
        request,
        session,
        "integrations.html",
        {
            **data,
            "tenant_url": hub_of(request).base,
            "idps": idps,
            "idp_names": names,
            "new_token": new_token,
            "title": "Integrations",
        },
        status=201 if new_token else 200,
    )


@get(_INTEGRATIONS, name="dashboard-integrations")
async def integrations(request: Req) -> Template:
    """Connectors with their tenant URL, tokens, IdP, status and last SCIM request."""
    session, data = await run_signed_in(request, _integrations)
    return _integrations_page(request, session, data)


@post(_INTEGRATIONS + "/connectors", name="dashboard-connector-create")
async def create_connector(request: Req) -> Redirect:
    """Enable an installed IdP under a name."""
    form = await form_of(request)
    name, idp = text_field(form, "name"), text_field(form, "idp")
    installed = hub_of(request).registry.dialects

    def work(conn: Connection, admin: AdminCaller) -> None:
        connectors.create_connector(
            conn, admin.workspace_pk, name=name, idp=idp, installed=installed
        )

    return await _act(
        request,
        _INTEGRATIONS,
        work,
        action="connector-create",
        resource=("connectors", name),
        ok=f"Connector {name.strip()} enabled. Generate its token to connect the IdP.",
        form=form,
    )


@post(_INTEGRATIONS + "/connectors/{connector:str}/state", name="dashboard-connector-state")
async def connector_state(request: Req) -> Redirect:
    """Enable or disable a connector (a disabled connector's tokens stop working)."""
    connector: str = request.path_params["connector"]
    form = await form_of(request)
    enabled = text_field(form, "enabled") == "on"

    def work(conn: Connection, admin: AdminCaller) -> None:
        connectors.set_enabled(conn, admin.workspace_pk, connector, enabled)

    return await _act(
        request,
        _INTEGRATIONS,
        work,
        action="connector-enable" if enabled else "connector-disable",
        resource=("connectors", connector),
        ok="Connector enabled." if enabled else "Connector disabled: its tokens stop working.",
        form=form,
    )


@post(_INTEGRATIONS + "/connectors/{connector:str}/token", name="dashboard-token-generate")
async def generate_token(request: Req) -> Response[Any]:
    """Generate (or regenerate: the old ones die) a token and show its secret once."""
    connector: str = request.path_params["connector"]
    form = await form_of(request)
    regenerate = text_field(form, "mode") == "regenerate"
    make = connectors.regenerate_token if regenerate else connectors.generate_token

    def work(conn: Connection, admin: AdminCaller) -> tuple[tokens.NewToken, dict[str, Any]]:
        new = make(conn, admin.workspace_pk, connector, admin.admin_pk)
        return new, _integrations(conn, admin)

    try:
        session, (new, data) = await run_signed_in(
            request,
            work,
            action="token-regenerate" if regenerate else "token-generate",
            resource=("connectors", connector),
            form=form,
        )
    except ScimError as exc:
        return redirect(request, _INTEGRATIONS, error=exc.detail)
    info = next((c for c in data["connectors"] if connector in (c.id, c.name)), None)
    shown = {
        "connector_id": info.id if info else connector,
        "connector": info.name if info else connector,
        "token": new.token,
        "regenerated": "yes" if regenerate else "",
    }
    return _integrations_page(request, session, data, shown)


# --------------------------------------------------------------------------- Security


def _security(conn: Connection, admin: AdminCaller) -> list[tokens.TokenInfo]:
    return tokens.list_tokens(conn, workspace_pk=admin.workspace_pk)


@get(_SECURITY, name="dashboard-security")
async def security(request: Req) -> Template:
    """Every unrevoked token: connector, creator, created, last used; dead ones say why."""
    session, infos = await run_signed_in(request, _security)
    alive = [t for t in infos if t.alive]
    dead = [t for t in infos if not t.alive]
    return page(
        request,
        session,
        "security.html",
        {"alive": alive, "dead": dead, "title": "Security"},
    )


@post(_SECURITY + "/tokens/{token_id:str}/revoke", name="dashboard-token-revoke")
async def revoke_token(request: Req) -> Redirect:
    """Revoke (delete) one token: the next request made with it is refused."""
    token_id: str = request.path_params["token_id"]

    def work(conn: Connection, admin: AdminCaller) -> None:
        tokens.revoke(conn, workspace_pk=admin.workspace_pk, token_id=token_id)

    return await _act(
        request,
        _SECURITY,
        work,
        action="token-revoke",
        resource=("tokens", token_id),
        ok="Token deleted: requests made with it are refused from now on.",
    )


# --------------------------------------------------------------------------- Card Settings


def _card_settings(conn: Connection, admin: AdminCaller) -> dict[str, Any]:
    return {
        "settings": activation.workspace_settings(conn, admin.workspace_pk),
        "templates": templates.list_templates(conn, admin.workspace_pk),
    }


@get(_SETTINGS, name="dashboard-card-settings")
async def card_settings(request: Req) -> Template:
    """The activation-email toggle and the templates in order, with a rule editor."""
    session, data = await run_signed_in(request, _card_settings)
    return page(
        request,
        session,
        "card_settings.html",
        {**data, "card_fields": CARD_FIELDS, "title": "Card Settings"},
    )


@post(_SETTINGS + "/activation-email", name="dashboard-activation-toggle")
async def activation_toggle(request: Req) -> Redirect:
    """Turn automatic activation emails on or off."""
    form = await form_of(request)
    on = text_field(form, "send_activation_email") == "on"

    def work(conn: Connection, admin: AdminCaller) -> None:
        activation.set_workspace_settings(conn, admin.workspace_pk, send_activation_email=on)

    return await _act(
        request,
        _SETTINGS,
        work,
        action="settings",
        resource=("settings", "-"),
        ok="New users get an activation email."
        if on
        else "New users get no activation email (send them from Team Cards).",
        form=form,
    )


def _template_changes(form: Mapping[str, Any]) -> TemplateChanges:
    fields = {
        name: text_field(form, f"field_{name}").strip()
        for name in CARD_FIELDS
        if text_field(form, f"field_{name}").strip()
    }
    rule = text_field(form, "rule").strip()
    return TemplateChanges(name=text_field(form, "name"), rule=rule or None, fields=fields)


@post(_SETTINGS + "/templates", name="dashboard-template-create")
async def create_template(request: Req) -> Redirect:
    """Create a template (name, rule, fields) at the end of the order."""
    form = await form_of(request)
    body = _template_changes(form)

    def work(conn: Connection, admin: AdminCaller) -> None:
        templates.create_template(conn, admin.workspace_pk, body)

    return await _act(
        request,
        _SETTINGS,
        work,
        action="template-create",
        resource=("templates", str(body.name)[:64]),
        ok=f"Template {str(body.name).strip()} created.",
        form=form,
    )


@post(_SETTINGS + "/templates/{template_id:str}", name="dashboard-template-edit")
async def edit_template(request: Req) -> Redirect:
    """Change a template's name, rule and fields; inheriting cards follow."""
    template_id: str = request.path_params["template_id"]
    form = await form_of(request)
    body = _template_changes(form)

    def work(conn: Connection, admin: AdminCaller) -> None:
        templates.edit_template(conn, admin.workspace_pk, template_id, body)

    return await _act(
        request,
        _SETTINGS,
        work,
        action="template-edit",
        resource=("templates", template_id),
        ok=f"Template {str(body.name).strip()} saved; its cards follow.",
        form=form,
    )


@post(_SETTINGS + "/templates/{template_id:str}/delete", name="dashboard-template-delete")
async def delete_template(request: Req) -> Redirect:
    """Delete a template; its cards keep their current values."""
    template_id: str = request.path_params["template_id"]

    def work(conn: Connection, admin: AdminCaller) -> None:
        templates.delete_template(conn, admin.workspace_pk, template_id)

    return await _act(
        request,
        _SETTINGS,
        work,
        action="template-delete",
        resource=("templates", template_id),
        ok="Template deleted; its cards keep their current values.",
    )


@post(_SETTINGS + "/templates/{template_id:str}/move", name="dashboard-template-move")
async def move_template(request: Req) -> Redirect:
    """Move a template one place up or down in the order rules are tried."""
    template_id: str = request.path_params["template_id"]
    form = await form_of(request)
    step = -1 if text_field(form, "direction") == "up" else 1

    def work(conn: Connection, admin: AdminCaller) -> None:
        order = [t["id"] for t in templates.list_templates(conn, admin.workspace_pk)]
        if template_id not in order:
            raise InvalidValue("no such template")
        i = order.index(template_id)
        j = i + step
        if 0 <= j < len(order):
            order[i], order[j] = order[j], order[i]
            templates.reorder(conn, admin.workspace_pk, order)

    return await _act(
        request,
        _SETTINGS,
        work,
        action="template-reorder",
        resource=("templates", template_id),
        ok="Template order saved.",
        form=form,
    )


@post(_SETTINGS + "/preview", name="dashboard-rule-preview", status_code=200)
async def preview_rule(request: Req) -> Response[bytes]:
    """Count the current users a rule matches, or say why it does not parse.

    JSON, for the rule editor's live count; the CSRF token comes in the X-CSRF-Token header.
    """
    try:
        body = msgspec.json.decode(await request.body())
    except NOT_JSON:
        body = None
    rule = body.get("rule") if isinstance(body, dict) else None
    if not isinstance(rule, str):
        return Response(_encode({"error": 'send {"rule": …}'}), status_code=400)

    def work(conn: Connection, admin: AdminCaller) -> dict[str, Any]:
        if not rule.strip():
            return {"matches": None, "error": None}
        try:
            result = templates.preview(conn, admin.workspace_pk, rule)
        except InvalidFilter as exc:
            return {"matches": None, "error": exc.detail}
        return {"matches": result["matches"], "activeUsers": result["activeUsers"], "error": None}

    _session, result = await run_signed_in(request, work)
    return Response(_encode(result), media_type="application/json")


# --------------------------------------------------------------------------- Team Cards


@get(_CARDS, name="dashboard-team-cards")
async def team_cards(request: Req) -> Template:
    """Seats at the top; users and cards with search, status and template filters, paging.

    Pages are keyset pages (`after` / `before` a card id), as fast at the end of 100,000 cards
    as at the start.
    """
    params = request.query_params
    query = cards.CardQuery(
        limit=PAGE_SIZE,
        q=(params.get("q") or "").strip() or None,
        status=params.get("status") or None,
        template=params.get("template") or None,
    )
    after = params.get("after") or None
    before = None if after else params.get("before") or None

    def work(conn: Connection, admin: AdminCaller) -> dict[str, Any]:
        error = None
        try:
            listing = team_cards_service.page(
                conn, admin.workspace_pk, query, after=after, before=before
            )
        except ScimError as exc:
            error = exc.detail
            listing = team_cards_service.TeamPage(
                cards=[], total=0, next_after=None, prev_before=None
            )
        return {
            "seats": team_cards_service.seats(conn, admin.workspace_pk),
            "listing": listing,
            "templates": templates.list_templates(conn, admin.workspace_pk),
            "error": error,
        }

    session, data = await run_signed_in(request, work)
    kept = {
        k: v
        for k, v in (("q", query.q), ("status", query.status), ("template", query.template))
        if v
    }
    listing = data["listing"]
    return page(
        request,
        session,
        "team_cards.html",
        {
            **data,
            "query": query,
            "first_url": _CARDS + ("?" + urlencode(kept) if kept else "")
            if after or before
            else None,
            "prev_url": _CARDS + "?" + urlencode({**kept, "before": listing.prev_before})
            if listing.prev_before
            else None,
            "next_url": _CARDS + "?" + urlencode({**kept, "after": listing.next_after})
            if listing.next_after
            else None,
            "statuses": cards.STATUSES,
            "title": "Team Cards",
        },
    )


@post(_CARDS + "/activation-emails", name="dashboard-send-activation")
async def send_activation(request: Req) -> Redirect:
    """Send activation emails to the selected cards' users (or to one)."""
    form = await form_of(request)
    user_ids = list_field(form, "user_id")
    back = text_field(form, "back")
    back = back if back.startswith(_CARDS) else _CARDS
    if not user_ids:
        return redirect(request, back, error="Select at least one card first.")
    if len(user_ids) > activation.MAX_USERS_PER_SEND:
        return redirect(request, back, error="Select fewer cards.")
    outcome: list[activation.SendResult] = []

    def work(conn: Connection, admin: AdminCaller) -> None:
        outcome.extend(activation.send(conn, workspace_pk=admin.workspace_pk, user_ids=user_ids))

    result = await _act(
        request,
        back,
        work,
        action="activation-send",
        resource=("activation-emails", user_ids[0] if len(user_ids) == 1 else "many"),
        ok="",
        form=form,
    )
    if outcome:
        queued = sum(1 for r in outcome if r.status == "queued")
        skipped = [r.detail for r in outcome if r.status != "queued"]
        text = f"Activation email queued for {queued} user{'s' if queued != 1 else ''}."
        if skipped:
            text += f" Not sent to {len(skipped)}: {skipped[0]}."
        return redirect(request, back, ok=text)
    return result


def _card_path(card_id: str) -> str:
    return f"{_CARDS}/{card_id}"


@get(_CARDS + "/{card_id:str}", name="dashboard-card")
async def card_editor(request: Req) -> Template:
    """One card: each field's value, source, lock and link; edit, lock, relink, template."""
    card_id: str = request.path_params["card_id"]

    def work(conn: Connection, admin: AdminCaller) -> dict[str, Any]:
        return {
            "card": cards.get_card(conn, admin.workspace_pk, card_id),
            "templates": templates.list_templates(conn, admin.workspace_pk),
            "seats": team_cards_service.seats(conn, admin.workspace_pk),
        }

    session, data = await run_signed_in(request, work)
    present = data["card"]["fields"]
    missing = [name for name in CARD_FIELDS if name not in present]
    return page(
        request,
        session,
        "card.html",
        {**data, "missing_fields": missing, "title": data["card"]["user"]["userName"]},
    )


@post(_CARDS + "/{card_id:str}/fields/{field:str}", name="dashboard-card-field")
async def card_field(request: Req) -> Redirect:
    """Edit, lock, unlock or relink one field (`do` = save / lock / unlock / relink)."""
    card_id: str = request.path_params["card_id"]
    field: str = request.path_params["field"]
    form = await form_of(request)
    do = text_field(form, "do") or "save"
    value = text_field(form, "value")

    def work(conn: Connection, admin: AdminCaller) -> None:
        ws = admin.workspace_pk
        if do == "save":
            cards.edit_field(conn, ws, card_id, field, value or None)
        elif do == "lock":
            cards.lock_field(conn, ws, card_id, field)
        elif do == "unlock":
            cards.unlock_field(conn, ws, card_id, field)
        elif do == "relink":
            cards.relink_field(conn, ws, card_id, field)
        else:
            raise InvalidValue(f"unknown action {do!r}")

    said = {
        "save": "saved; it no longer follows the IdP or template (unlinked)",
        "lock": "locked: the owner cannot edit it",
        "unlock": "unlocked: the owner may edit it; it no longer follows upstream",
        "relink": "relinked: it follows the IdP or template again",
    }
    return await _act(
        request,
        _card_path(card_id),
        work,
        action=f"card-field-{do}"[:40],
        resource=("cards", card_id),
        ok=f"{field.replace('_', ' ').capitalize()} {said.get(do, 'changed')}.",
        form=form,
    )


@post(_CARDS + "/{card_id:str}/template", name="dashboard-card-template")
async def card_template(request: Req) -> Redirect:
    """Assign a template to the card by hand (or none)."""
    card_id: str = request.path_params["card_id"]
    form = await form_of(request)
    template_id = text_field(form, "template")
    hub = hub_of(request)
    applied: list[Any] = []

    def work(conn: Connection, admin: AdminCaller) -> None:
        if template_id:
            card, template = cards.assign_template(conn, admin.workspace_pk, card_id, template_id)
            user = users.render(cards.user_row(conn, card["user"]["id"]), hub.base, None)
            applied.append((admin.workspace_id, user, template))
        else:
            cards.unassign_template(conn, admin.workspace_pk, card_id)

    result = await _act(
        request,
        _card_path(card_id),
        work,
        action="card-template",
        resource=("cards", card_id),
        ok="Template assigned." if template_id else "The card no longer inherits a template.",
        form=form,
    )
    for workspace, user, template in applied:
        hub.registry.broadcast(
            "template_applied", workspace=workspace, user=user, template=template
        )
    return result


# --------------------------------------------------------------------------- Activity


@get(_ACTIVITY, name="dashboard-activity")
async def activity_log(request: Req) -> Template:
    """SCIM requests newest first: time, connector, operation, resource, outcome, error."""
    params = request.query_params
    connector = params.get("connector") or None
    outcome = params.get("outcome") if params.get("outcome") in ("ok", "error") else None
    user = (params.get("user") or "").strip() or None
    before_raw = params.get("before") or ""
    before = int(before_raw) if before_raw.isdigit() else None

    def work(conn: Connection, admin: AdminCaller) -> dict[str, Any]:
        return {
            "entries": activity.entries(
                conn,
                workspace_pk=admin.workspace_pk,
                connector_id=connector,
                outcome=outcome,
                user=user,
                before=before,
                limit=ACTIVITY_PAGE,
            ),
            "connectors": connectors.list_connectors(conn, admin.workspace_pk),
        }

    session, data = await run_signed_in(request, work)
    entries = data["entries"]
    kept = {k: v for k, v in (("connector", connector), ("outcome", outcome), ("user", user)) if v}
    older = None
    if len(entries) == ACTIVITY_PAGE:
        older = _ACTIVITY + "?" + urlencode({**kept, "before": entries[-1].id})
    return page(
        request,
        session,
        "activity.html",
        {
            **data,
            "filters": {"connector": connector, "outcome": outcome, "user": user},
            "older_url": older,
            "newest_url": _ACTIVITY + ("?" + urlencode(kept) if kept else "") if before else None,
            "title": "Activity",
        },
    )


ROUTES: list[HTTPRouteHandler] = [
    integrations,
    create_connector,
    connector_state,
    generate_token,
    security,
    revoke_token,
    card_settings,
    activation_toggle,
    create_template,
    move_template,
    delete_template,
    edit_template,
    preview_rule,
    team_cards,
    send_activation,
    card_editor,
    card_field,
    card_template,
    activity_log,
]

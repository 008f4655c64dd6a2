"""The ``New campaign`` form: ``Check`` runs the API's dry run and shows its report; ``Create campaign`` creates.

The form's fields become the API's settings JSON (the same names, DESIGN.md §4) and go through the same
validation and the same import path as ``POST /v1/campaigns`` (``worker.api.campaigns.create_from_upload``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from campaigns import campaign as campaign_service
from campaigns.errors import FieldError, ValidationFailed
from campaigns.importing.guard import DuplicateUpload
from campaigns.mapping import (
    DATE_ORDERS,
    DROP,
    FIELD_TARGETS,
    LIST_SETTINGS_FIELDS,
    METADATA_PREFIX,
    parse_map_options,
)
from campaigns.states import RETRY_POLICY_OUTCOMES, Channel
from worker.api.campaigns import create_from_upload
from worker.api.deps import RuntimeDep, uploaded_size
from worker.runtime import Runtime
from worker.ui.common import SignedIn, checked_form, render, text_field

router = APIRouter(prefix="/ui", include_in_schema=False)

TEXT_FIELDS = (
    "name",
    "assistant_id",
    "telnyx_agent_target",
    "telnyx_conversation_channel",
    "text",
    "max_retries_client_errors",
    "retry_interval_secs",
    "answering_machine_detection",
    "voicemail_action",
    "ruleset",
    "timezone",
    "default_region",
    "max_concurrent_calls",
    "max_dispatches_per_second",
    "start_at",
)
LIST_TEXT_FIELDS = LIST_SETTINGS_FIELDS
"""How the call list is read (docs/csv.md): the mapping one ``Header = target`` a line, the lists comma-separated."""
POLICY_KEYS = ("max_retries", "retry_interval_secs")
POLICY_FIELDS = tuple(f"retry_policy.{outcome}.{key}" for outcome in RETRY_POLICY_OUTCOMES for key in POLICY_KEYS)
"""The per-outcome ``retry_policy``, two numbers an outcome; an outcome left empty shares the Retries above."""
INT_FIELDS = ("max_retries_client_errors", "retry_interval_secs", "max_concurrent_calls")
FLOAT_FIELDS = ("max_dispatches_per_second",)
LABELS = {
    "name": "Name",
    "assistant_id": "Assistant ID",
    "telnyx_agent_target": "From number",
    "telnyx_conversation_channel": "Channel",
    "text": "Message template",
    "max_retries_client_errors": "Retries",
    "retry_interval_secs": "Retry interval (seconds)",
    "answering_machine_detection": "Answering-machine detection",
    "voicemail_action": "On voicemail",
    "ruleset": "Ruleset",
    "timezone": "Time zone",
    "default_region": "Default region",
    "max_concurrent_calls": "Concurrent calls",
    "max_dispatches_per_second": "Dispatches per second",
    "start_at": "Start time",
    "file": "Call list",
    "mapping": "Column mapping",
    "variables": "Variables sent",
    "drop_columns": "Columns to drop",
    "date_order": "Date order",
    "retry_policy": "Retry policy",
    "dedupe_key": "One reminder per",
    "late_policy": "Late rows",
    "allow_duplicate_upload": "Allow a duplicate upload",
}
DEFAULTS = {
    "telnyx_conversation_channel": Channel.PHONE_CALL.value,
    "max_retries_client_errors": "2",
    "retry_interval_secs": "600",
    "answering_machine_detection": "detect",
    "voicemail_action": "retry",
    "ruleset": "us",
    "default_region": "US",
}


def settings_body(values: dict[str, str]) -> tuple[dict[str, Any], list[FieldError]]:
    """The form's values as the API's settings JSON: empty fields are left out (the API's defaults apply);
    numbers that are not numbers are reported against their field."""
    body: dict[str, Any] = {}
    problems: list[FieldError] = []
    for name in TEXT_FIELDS:
        raw = values.get(name, "")
        if raw == "":
            continue
        if name in INT_FIELDS or name in FLOAT_FIELDS:
            try:
                body[name] = int(raw) if name in INT_FIELDS else float(raw)
            except ValueError:
                kind = "a whole number" if name in INT_FIELDS else "a number"
                problems.append(FieldError(f"/campaign/{name}", f"{raw!r} is not {kind}"))
            continue
        body[name] = raw
    _list_settings(values, body, problems)
    _retry_policy(values, body, problems)
    if body.get("telnyx_conversation_channel") != Channel.SMS_CHAT:
        body.pop("text", None)  # the template belongs to SMS; a call's assistant speaks for itself
    else:
        # SMS never retries and has no detection (DESIGN.md §2); the call-only fields are not sent.
        for name in ("max_retries_client_errors", "retry_interval_secs", "answering_machine_detection", "retry_policy"):
            body.pop(name, None)
        body.pop("voicemail_action", None)
    if "start_at" in body and len(body["start_at"]) == 16:  # <input type=datetime-local> has no zone
        problems.append(
            FieldError("/campaign/start_at", "give the start time with its zone, e.g. 2026-05-07T09:00-04:00")
        )
    return body, problems


def _list_settings(values: dict[str, str], body: dict[str, Any], problems: list[FieldError]) -> None:
    """``mapping`` (``Header = target`` a line, ``-`` drops; blank lines and ``#`` comments skipped), ``variables``
    and ``drop_columns`` (comma-separated), ``date_order``: the API's call-list settings, left out when empty."""
    mapping: dict[str, str | None] = {}
    for number, line in enumerate(values.get("mapping", "").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            mapping.update(parse_map_options([line]))
        except ValueError:
            problems.append(
                FieldError(
                    "/campaign/mapping",
                    f"line {number}: {line.strip()!r} is not HEADER = TARGET (e.g. Phone Number = phone; "
                    f"{DROP} as the target drops the column)",
                )
            )
    if mapping:
        body["mapping"] = mapping
    for name in ("variables", "drop_columns", "dedupe_key"):
        items = [item.strip() for item in values.get(name, "").split(",") if item.strip()]
        if items:
            body[name] = items
    if values.get("date_order"):
        body["date_order"] = values["date_order"]
    if values.get("late_policy", "").strip():
        body["late_policy"] = values["late_policy"].strip()
    if values.get("allow_duplicate_upload") == "true":
        body["allow_duplicate_upload"] = True


def _retry_policy(values: dict[str, str], body: dict[str, Any], problems: list[FieldError]) -> None:
    policy: dict[str, dict[str, int]] = {}
    for outcome in RETRY_POLICY_OUTCOMES:
        entry: dict[str, int] = {}
        for key in POLICY_KEYS:
            raw = values.get(f"retry_policy.{outcome}.{key}", "").strip()
            if not raw:
                continue
            try:
                entry[key] = int(raw)
            except ValueError:
                problems.append(FieldError(f"/campaign/retry_policy/{outcome}/{key}", f"{raw!r} is not a whole number"))
        if entry:
            policy[outcome] = entry
    if policy:
        body["retry_policy"] = policy


def _label(pointer: str) -> str:
    """What the operator sees for an error's field: the form's label (``/retry_policy/busy/max_retries`` →
    ``Retry policy, busy (max retries)``; ``/mapping/Email`` → ``Column mapping, Email``)."""
    parts = [part for part in pointer.split("/") if part and part != "campaign"]
    if not parts:
        return "form"
    if parts[0] in ("retry_policy", "mapping") and len(parts) > 1:
        detail = f" ({parts[2].replace('_', ' ')})" if len(parts) > 2 else ""
        return f"{LABELS[parts[0]]}, {parts[1]}{detail}"
    return LABELS.get(parts[0], LABELS.get(parts[-1], parts[-1]))


def _form_values(form: FormData | None) -> dict[str, str]:
    values = dict(DEFAULTS)
    if form is not None:
        values.update({name: text_field(form, name) for name in (*TEXT_FIELDS, *LIST_TEXT_FIELDS, *POLICY_FIELDS)})
        if not values["telnyx_conversation_channel"]:
            values["telnyx_conversation_channel"] = DEFAULTS["telnyx_conversation_channel"]
    return values


@router.get("/campaigns/new", response_class=HTMLResponse)
def new_campaign_page(request: Request, _: SignedIn) -> HTMLResponse:
    return render(request, "new_campaign.html", report=None, problems=[], **_form_context(_form_values(None)))


@router.post("/campaigns/new")
async def submit_new_campaign(request: Request, signed: SignedIn, runtime: RuntimeDep) -> Response:
    """``Check`` (``action=check``): the dry-run report, the form as it was; ``Create campaign``: its page."""
    form = await checked_form(request, signed)
    values = _form_values(form)
    dry_run = form.get("action") != "create"
    body, problems = settings_body(values)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        problems.append(FieldError("/file", "choose the call list (a CSV file)"))
    result: dict[str, Any] | None = None
    if not problems:
        try:
            settings = campaign_service.validate_settings(body, now=runtime.clock.now())
            assert isinstance(upload, UploadFile)
            result = await _create(runtime, request, settings, upload, dry_run)
        except ValidationFailed as exc:
            problems.extend(exc.errors)
        except DuplicateUpload as exc:  # the API's 409: shown on the form, with the box that allows it
            problems.append(FieldError("/campaign/allow_duplicate_upload", str(exc)))
    if problems or result is None or dry_run:
        report = result["import"] if result is not None else None
        return render(
            request,
            "new_campaign.html",
            status_code=400 if problems else 200,
            problems=[(_label(p.pointer), p.detail) for p in problems],
            report=report,
            columns=report_columns(report),
            filename=upload.filename if isinstance(upload, UploadFile) else None,
            **_form_context(values),
        )
    return RedirectResponse(f"/ui/campaigns/{result['id']}?notice=Created.", status_code=303)


async def _create(
    runtime: Runtime, request: Request, settings: campaign_service.CampaignSettings, upload: UploadFile, dry_run: bool
) -> dict[str, Any]:
    """The file as the form parser spooled it, once (no second copy, as ``POST /v1/campaigns``); the guard cut
    the body off past the upload cap."""
    size = uploaded_size(upload, runtime.settings.max_upload_bytes)
    enqueue = request.app.state.enqueue_import
    return await run_in_threadpool(create_from_upload, runtime, settings, upload.file, size, dry_run, enqueue)


def _form_context(values: dict[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "labels": LABELS,
        "policy_outcomes": RETRY_POLICY_OUTCOMES,
        "date_orders": DATE_ORDERS,
        "field_targets": FIELD_TARGETS,
        "policy_open": any(values.get(name) for name in POLICY_FIELDS),
    }


def report_columns(report: dict[str, Any] | None) -> list[dict[str, str]]:
    """The dry run's ``mapping`` with what each column becomes, in the operator's words: the event's phone, time
    zone… (``field``), ``conversation_metadata`` (``metadata``), a variable sent to the provider or kept back by the
    allow-list (usable in the SMS template only), or dropped."""
    if not report:
        return []
    variables, sent = set(report.get("variables", ())), set(report.get("sent_variables", ()))
    rows = []
    for entry in report.get("mapping", ()):
        target = str(entry["target"])
        if target == DROP:
            role = "dropped: never read"
        elif target in FIELD_TARGETS:
            role = "field of the event"
        elif target.startswith(METADATA_PREFIX):
            role = "conversation metadata"
        elif target in sent:
            role = "variable, sent to the provider"
        elif target in variables:
            role = "variable, not sent (not in Variables sent)"
        else:
            role = "variable"
        rows.append({"column": str(entry["column"]), "target": target, "role": role})
    return rows

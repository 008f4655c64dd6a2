"""Validation of create requests, shared with campaign settings: targets, times, retry rules, storable values."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from campaigns import windows
from campaigns.errors import FieldError, ValidationFailed
from campaigns.phones import E164
from campaigns.states import (
    CHANNELS,
    MACHINE_DETECTION_MODES,
    RETRY_POLICY_OUTCOMES,
    VOICEMAIL_ACTIONS,
    Channel,
    MachineDetection,
    VoicemailAction,
)
from campaigns.templates import MissingValue, TemplateError, has_placeholders, parse_template

SIP_URI = re.compile(r"^sips?:[^@\s]+@[^\s@]+$", re.IGNORECASE)
SIP_REGIONS = ("US", "Europe", "Canada", "Australia", "Middle East")

KNOWN_FIELDS = frozenset(
    {
        "telnyx_conversation_channel",
        "telnyx_end_user_target",
        "telnyx_agent_target",
        "scheduled_at_fixed_datetime",
        "text",
        "conversation_metadata",
        "dynamic_variables",
        "max_retries_client_errors",
        "retry_interval_secs",
        "call_settings",
        # Extensions.
        "ruleset",
        "timezone",
        "answering_machine_detection",
        "voicemail_action",
        "retry_policy",
    }
)


@dataclass(frozen=True)
class NewEvent:
    """A validated create request."""

    channel: str
    end_user_target: str
    agent_target: str
    scheduled_at: datetime
    text: str | None
    conversation_metadata: dict[str, str | int | bool]
    dynamic_variables: dict[str, str]
    max_retries_client_errors: int
    retry_interval_secs: int | None
    call_settings: dict[str, Any] | None
    ruleset: str
    timezone: str | None
    answering_machine_detection: str = MachineDetection.DISABLED
    voicemail_action: str = VoicemailAction.RETRY
    retry_policy: dict[str, dict[str, int]] | None = None


def parse_datetime(value: object) -> datetime | None:
    """An ISO 8601 instant; a value without an offset is taken as UTC. ``None`` when unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)  # 9999-12-31T23:00-05:00 is past the last representable instant
    except OverflowError:
        return None
    return parsed


MAX_STRING = 255
"""Longest value of the short text columns (targets, assistant ids, names)."""
MAX_INT32 = 2**31 - 1
"""Largest value of the integer columns."""

MAX_TEXT = 25 * 153
"""Characters of an SMS ``text``: 25 GSM-7 segments of 153, the most any Telnyx route accepts ("Most carriers
reject concatenated SMS beyond 10 segments … Some aggregator routes accept longer messages, up to 25 segments",
https://developers.telnyx.com/docs/messaging/messages/sms-chunking; 153 characters a part,
https://developers.telnyx.com/docs/messaging/messages/character-and-rate-limits)."""
MAX_VARIABLES = 100
MAX_VARIABLE_NAME = 128
MAX_VARIABLE_VALUE = 4096
"""Telnyx documents no limits for ``dynamic_variables`` (string, number or boolean values interpolated into the
assistant's instructions, https://developers.telnyx.com/docs/inference/ai-assistants/dynamic-variables). They
are sent with every dial (TeXML ``AIAssistantDynamicVariables``) and end up in the model's prompt, so these caps
are ours: generous for personalization (a name, a date, an address, a few sentences of context), far from the
megabytes a single request could otherwise store and send on every attempt (issue 19 item 7)."""
MAX_METADATA_KEYS = 100
MAX_METADATA_VALUE = 1024
"""``conversation_metadata``: ours too (Telnyx documents none); the same key count, shorter values (ids, tags)."""
MAX_CALL_SETTINGS_BYTES = 4096


def size_problems(body: dict[str, Any]) -> list[FieldError]:
    """Fields over their size caps (``MAX_*`` above), each named by its JSON pointer."""
    found: list[FieldError] = []
    text = body.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT:
        found.append(FieldError("/text", f"must be at most {MAX_TEXT} characters (25 SMS segments), not {len(text)}"))
    for field, max_keys, max_value in (
        ("dynamic_variables", MAX_VARIABLES, MAX_VARIABLE_VALUE),
        ("conversation_metadata", MAX_METADATA_KEYS, MAX_METADATA_VALUE),
    ):
        entries = body.get(field)
        if not isinstance(entries, dict):
            continue
        if len(entries) > max_keys:
            found.append(FieldError(f"/{field}", f"must have at most {max_keys} keys, not {len(entries)}"))
            continue
        for key, value in entries.items():
            pointer = f"/{field}/{_pointer_token(key)[:MAX_VARIABLE_NAME]}"
            if len(str(key)) > MAX_VARIABLE_NAME:
                found.append(FieldError(pointer, f"keys must be at most {MAX_VARIABLE_NAME} characters"))
            elif isinstance(value, str) and len(value) > max_value:
                found.append(FieldError(pointer, f"must be at most {max_value} characters, not {len(value)}"))
    settings = body.get("call_settings")
    if isinstance(settings, dict) and len(json.dumps(settings, default=str)) > MAX_CALL_SETTINGS_BYTES:
        found.append(FieldError("/call_settings", f"must be at most {MAX_CALL_SETTINGS_BYTES} bytes as JSON"))
    return found


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _pointer_token(key: object) -> str:
    return str(key).replace("~", "~0").replace("/", "~1").encode("utf-8", "backslashreplace").decode()


def _strings_where(value: object, pointer: str, bad: Callable[[str], bool], what: str) -> list[FieldError]:
    """One error per string or key of a JSON value for which ``bad`` holds, named by its JSON pointer."""
    if isinstance(value, str):
        return [FieldError(pointer, f"must not contain {what}")] if bad(value) else []
    found: list[FieldError] = []
    if isinstance(value, dict):
        for key, item in value.items():
            key_pointer = f"{pointer}/{_pointer_token(key)}"
            if isinstance(key, str) and bad(key):
                found.append(FieldError(key_pointer, f"keys must not contain {what}"))
            found.extend(_strings_where(item, key_pointer, bad, what))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_strings_where(item, f"{pointer}/{i}", bad, what))
    return found


def lone_surrogates(value: object, pointer: str) -> list[FieldError]:
    """Where a lone UTF-16 surrogate (JSON ``"\\ud800"``) hides in a JSON value: no UTF-8 text holds one, so
    PostgreSQL cannot store it and no provider could be sent it."""
    return _strings_where(value, pointer, _has_lone_surrogate, "lone surrogates (\\ud800-\\udfff)")


def nul_characters(value: object, pointer: str) -> list[FieldError]:
    """Where a NUL character or a lone surrogate hides in a JSON value (PostgreSQL stores neither in text or
    JSONB): one error per string or key that holds one, named by its JSON pointer."""
    nul = _strings_where(value, pointer, lambda text: "\x00" in text, "NUL characters (\\u0000)")
    return nul + lone_surrogates(value, pointer)


def is_target(value: str) -> bool:
    return bool(E164.match(value) or SIP_URI.match(value))


def is_int(value: object) -> TypeGuard[int]:
    """An integer that is not a bool (JSON ``true`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def validate_create(
    body: object, *, now: datetime, default_ruleset: str, known_rulesets: frozenset[str] | None = None
) -> NewEvent:
    """Check a create request against every documented rule; raise ``ValidationFailed`` listing them all."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "request body must be a JSON object")])
    errors: list[FieldError] = []

    def bad(name: str, detail: str) -> None:
        errors.append(FieldError(f"/{name}", detail))

    channel = body.get("telnyx_conversation_channel")
    if channel is None:
        bad("telnyx_conversation_channel", "is required")
    elif channel not in CHANNELS:
        bad("telnyx_conversation_channel", f"must be one of {', '.join(CHANNELS)}")

    targets: dict[str, str] = {}
    for name in ("telnyx_end_user_target", "telnyx_agent_target"):
        value = body.get(name)
        if value is None or value == "":
            bad(name, "is required")
        elif not isinstance(value, str):
            bad(name, "must be a string")
        elif len(value.strip()) > MAX_STRING:
            bad(name, f"must be at most {MAX_STRING} characters")
        elif not is_target(value.strip()):
            bad(name, "must be a phone number in E.164 form (+15551234567) or a SIP URI (sip:user@host)")
        else:
            targets[name] = value.strip()

    scheduled_raw = body.get("scheduled_at_fixed_datetime")
    scheduled_at = parse_datetime(scheduled_raw)
    if scheduled_raw is None:
        bad("scheduled_at_fixed_datetime", "is required")
    elif scheduled_at is None:
        bad("scheduled_at_fixed_datetime", "must be an ISO 8601 date-time, e.g. 2026-05-08T15:00:00Z")
    elif scheduled_at <= now:
        bad("scheduled_at_fixed_datetime", f"must be in the future (now is {now.isoformat()})")

    message = body.get("text")
    if channel == Channel.SMS_CHAT:
        if message is None or (isinstance(message, str) and not message.strip()):
            bad("text", "is required for sms_chat events")
        elif not isinstance(message, str):
            bad("text", "must be a string")
    elif message is not None and not isinstance(message, str):
        bad("text", "must be a string")

    metadata = body.get("conversation_metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        bad("conversation_metadata", "must be an object")
    else:
        for key, value in metadata.items():
            if not isinstance(value, str | bool) and not is_int(value):
                errors.append(
                    FieldError(f"/conversation_metadata/{key}", "values must be strings, integers or booleans")
                )

    variables = body.get("dynamic_variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        bad("dynamic_variables", "must be an object")
    else:
        for key, value in variables.items():
            if not isinstance(value, str):
                errors.append(FieldError(f"/dynamic_variables/{key}", "values must be strings"))

    retries = body.get("max_retries_client_errors")
    interval = body.get("retry_interval_secs")
    check_retry_policy(channel, retries, interval, bad)

    check_outcome_settings(body, channel, bad, errors)

    call_settings = body.get("call_settings")
    if call_settings is not None:
        if channel == Channel.SMS_CHAT:
            bad("call_settings", "applies to phone_call events only")
        elif not isinstance(call_settings, dict):
            bad("call_settings", "must be an object")
        elif call_settings.get("sip_region") not in (None, *SIP_REGIONS):
            errors.append(FieldError("/call_settings/sip_region", f"must be one of {', '.join(SIP_REGIONS)}"))

    ruleset = body.get("ruleset", default_ruleset)
    if not isinstance(ruleset, str) or (known_rulesets is not None and ruleset not in known_rulesets):
        bad("ruleset", f"must be one of {', '.join(sorted(known_rulesets or {'none'}))}")
    timezone = body.get("timezone")
    if timezone is not None and not windows.is_timezone(timezone):
        bad("timezone", "must be an IANA time zone name, e.g. America/New_York")

    unknown = sorted(set(body) - KNOWN_FIELDS)
    for name in unknown:
        bad(name, "is not a known field")
    errors.extend(nul_characters(body, ""))
    errors.extend(size_problems(body))

    if channel == Channel.SMS_CHAT and isinstance(message, str) and isinstance(variables, dict) and not errors:
        message = _rendered_text(message, variables, targets, bad)

    if errors:
        raise ValidationFailed(errors)
    assert scheduled_at is not None and isinstance(channel, str)
    is_call = channel == Channel.PHONE_CALL
    return NewEvent(
        channel=channel,
        end_user_target=targets["telnyx_end_user_target"],
        agent_target=targets["telnyx_agent_target"],
        scheduled_at=scheduled_at.astimezone(UTC),
        text=message if isinstance(message, str) else None,
        conversation_metadata=dict(metadata),
        dynamic_variables=dict(variables),
        max_retries_client_errors=int(retries or 0) if is_call else 0,
        retry_interval_secs=int(interval) if is_call and interval else None,
        call_settings=dict(call_settings) if isinstance(call_settings, dict) else None,
        ruleset=str(ruleset),
        timezone=timezone if isinstance(timezone, str) else None,
        answering_machine_detection=str(body.get("answering_machine_detection") or MachineDetection.DISABLED),
        voicemail_action=str(body.get("voicemail_action") or VoicemailAction.RETRY),
        retry_policy=retry_policy_value(body.get("retry_policy")),
    )


def check_retry_policy(channel: object, retries: object, interval: object, bad: Callable[[str, str], None]) -> None:
    """The documented retry rules, shared by events and campaigns: 0-10 retries, 60-86400 s, both or neither,
    neither on SMS."""
    if channel == Channel.SMS_CHAT:
        if retries not in (None, 0):
            bad("max_retries_client_errors", "retries apply to phone_call only; omit it for sms_chat")
        if interval not in (None, 0):
            bad("retry_interval_secs", "retries apply to phone_call only; omit it for sms_chat")
        return
    if retries is not None and (not is_int(retries) or not 0 <= retries <= 10):
        bad("max_retries_client_errors", "must be an integer from 0 to 10")
    if interval is not None and (not is_int(interval) or not 60 <= interval <= 86400):
        bad("retry_interval_secs", "must be an integer from 60 to 86400")
    has_retries = is_int(retries) and retries > 0
    if has_retries and interval is None:
        bad("retry_interval_secs", "is required when max_retries_client_errors is greater than 0")
    if interval not in (None, 0) and not has_retries and retries in (None, 0):
        bad("retry_interval_secs", "is only allowed together with max_retries_client_errors greater than 0")


def check_outcome_settings(
    body: dict[str, Any], channel: object, bad: Callable[[str, str], None], errors: list[FieldError]
) -> None:
    """The outcome settings (extension fields, DESIGN.md §2.5), shared by events and campaigns: the detection mode,
    ``voicemail_action`` and a ``retry_policy`` whose entries follow Telnyx's retry rules (0-10 retries,
    60-86400 s); none of them on SMS. Errors name the field (``/retry_policy/busy/max_retries``)."""
    sms = channel == Channel.SMS_CHAT
    for name, allowed in (
        ("answering_machine_detection", MACHINE_DETECTION_MODES),
        ("voicemail_action", VOICEMAIL_ACTIONS),
    ):
        value = body.get(name)
        if value is None:
            continue
        if sms:
            bad(name, "applies to phone_call only; omit it for sms_chat")
        elif value not in allowed:
            bad(name, f"must be one of {', '.join(allowed)}")
    policy = body.get("retry_policy")
    if policy is None:
        return
    if sms:
        bad("retry_policy", "retries apply to phone_call only; omit it for sms_chat")
        return
    if not isinstance(policy, dict):
        bad("retry_policy", f"must be an object whose keys are outcomes: {', '.join(RETRY_POLICY_OUTCOMES)}")
        return
    for outcome, entry in policy.items():
        pointer = f"/retry_policy/{outcome}"
        if outcome not in RETRY_POLICY_OUTCOMES:
            errors.append(
                FieldError(pointer, f"is not an outcome a policy may name ({', '.join(RETRY_POLICY_OUTCOMES)})")
            )
            continue
        if not isinstance(entry, dict):
            errors.append(FieldError(pointer, "must be an object with max_retries and retry_interval_secs"))
            continue
        retries, interval = entry.get("max_retries"), entry.get("retry_interval_secs")
        for key in sorted(set(entry) - {"max_retries", "retry_interval_secs"}):
            errors.append(FieldError(f"{pointer}/{key}", "is not a known field"))
        if retries is None:
            errors.append(FieldError(f"{pointer}/max_retries", "is required"))
        elif not is_int(retries) or not 0 <= retries <= 10:
            errors.append(FieldError(f"{pointer}/max_retries", "must be an integer from 0 to 10"))
        if interval is None:
            if is_int(retries) and retries > 0:
                errors.append(
                    FieldError(f"{pointer}/retry_interval_secs", "is required when max_retries is greater than 0")
                )
        elif not is_int(interval) or not 60 <= interval <= 86400:
            errors.append(FieldError(f"{pointer}/retry_interval_secs", "must be an integer from 60 to 86400"))


def retry_policy_value(policy: object) -> dict[str, dict[str, int]] | None:
    """A validated ``retry_policy`` as stored (``None`` when absent or empty)."""
    if not isinstance(policy, dict) or not policy:
        return None
    return {
        str(outcome): {
            "max_retries": int(entry["max_retries"]),
            "retry_interval_secs": int(entry.get("retry_interval_secs") or 60),
        }
        for outcome, entry in policy.items()
        if isinstance(entry, dict)
    }


def check_assistant_id(assistant_id: str) -> None:
    """An assistant id that could be stored (``/v2`` path parameter): a 400 otherwise, on every route."""
    if len(assistant_id) > MAX_STRING or "\x00" in assistant_id:
        detail = f"must be at most {MAX_STRING} characters, without NUL characters"
        raise ValidationFailed([FieldError("/assistant_id", detail)])


def _rendered_text(
    message: str, variables: dict[str, Any], targets: dict[str, str], bad: Callable[[str, str], None]
) -> str:
    """An SMS ``text`` with its ``{{name}}`` placeholders filled from ``dynamic_variables`` and Telnyx's system
    variables, as Telnyx documents them (campaigns.templates cites the pages); a name with no value is a 400."""
    if not has_placeholders(message):
        return message
    values = {**targets, "telnyx_conversation_channel": Channel.SMS_CHAT.value, **variables}
    try:
        return parse_template(message, list(variables)).render(values)
    except TemplateError as exc:
        bad("text", f"{exc}; give it in dynamic_variables")
    except MissingValue as exc:
        bad("text", f"dynamic_variables has an empty value for {{{{{exc.name}}}}}, which the text uses")
    return message

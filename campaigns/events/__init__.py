"""Scheduled events, the Telnyx resource: validation, storage, listing, cancellation, deletion and wire shapes.

Owns the writes of ``scheduled_events`` rows made on a client's request (create, cancel, delete); the lifecycle
owns the ones made while dispatching. Modules:

- ``validation``: create requests and the rules campaign settings share (targets, times, retries, NUL checks);
- ``store``: create (with ``Idempotency-Key``), find, list with filters, cancel, delete (soft: ``deleted_at``);
- ``wire``: ``serialize_telnyx_event`` (``/v2``: Telnyx's four statuses) and ``serialize_event`` (``/v1``).
"""

from campaigns.events.store import (
    NOTIFY_CHANNEL,
    EventFilter,
    campaign_filter,
    cancel_event,
    create_event,
    create_requested,
    delete_event,
    get_event,
    list_events,
    notify_due,
    telnyx_filter,
)
from campaigns.events.validation import (
    MAX_INT32,
    MAX_STRING,
    SIP_REGIONS,
    NewEvent,
    check_assistant_id,
    check_outcome_settings,
    check_retry_policy,
    is_int,
    is_target,
    lone_surrogates,
    nul_characters,
    parse_datetime,
    retry_policy_value,
    validate_create,
)
from campaigns.events.wire import TELNYX_CALL_STATUSES, serialize_event, serialize_telnyx_event, telnyx_call_status

__all__ = [
    "MAX_INT32",
    "MAX_STRING",
    "NOTIFY_CHANNEL",
    "SIP_REGIONS",
    "TELNYX_CALL_STATUSES",
    "EventFilter",
    "NewEvent",
    "campaign_filter",
    "cancel_event",
    "check_assistant_id",
    "check_outcome_settings",
    "check_retry_policy",
    "create_event",
    "create_requested",
    "delete_event",
    "get_event",
    "is_int",
    "is_target",
    "list_events",
    "lone_surrogates",
    "notify_due",
    "nul_characters",
    "parse_datetime",
    "retry_policy_value",
    "serialize_event",
    "serialize_telnyx_event",
    "telnyx_call_status",
    "telnyx_filter",
    "validate_create",
]

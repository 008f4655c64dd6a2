"""The event lifecycle (DESIGN.md §2): claim, claim-time checks, dispatch, outcomes and retries, reconciliation.

Owns the writes to ``scheduled_events`` and ``call_attempts`` once an event exists (the importers and the events
API create events, and cancel them with their campaign or on request). The modules, in the order an event meets
them:

- ``checks``: claim-time checks (calling window, pacing, frequency caps, do-not-contact) and their answers;
- ``claim``: ``pending`` → ``in_progress`` for due events, with an attempt row each;
- ``dispatch``: mark attempts ``sending`` and say what to send; record what the provider answered;
- ``outcomes``: call and SMS outcomes, retry arithmetic;
- ``reconcile``: events whose lease expired without an outcome;
- ``transitions``: every status change of an event or an attempt (the one writer of ``status`` and ``state``);
- ``locking``: the lock order every path follows (events before attempts, batches in id order).

Functions that take a session only flush; the caller's unit of work commits. Requests to the provider happen
outside: ``campaigns.dispatch`` sends between two of these transactions, ``campaigns.webhooks`` applies what
comes back. Only ``reconcile_expired_leases`` asks the provider something (whether a call is still up), between
short units of work of its own, so no row stays locked across a network call.

May import: ``campaigns.{models, states, phones, windows, telephony, metrics, logs, db, ids}``. It reads the
do-not-contact list's table through ``models`` (``checks``) rather than importing ``campaigns.suppression``, and
never imports the use cases above it (``dispatch``, ``webhooks``, ``events``, ``campaign``), Celery, FastAPI or
``worker``.
"""

from __future__ import annotations

from campaigns.lifecycle.checks import (
    ClaimCheck,
    Defer,
    DoNotContactCheck,
    FrequencyCapCheck,
    PacingCheck,
    Suppress,
    default_checks,
    window_check,
)
from campaigns.lifecycle.claim import Claimed, claim_due_events, next_due_at
from campaigns.lifecycle.dispatch import (
    begin_dispatch,
    begin_dispatch_many,
    mark_sending,
    record_dispatched_many,
    record_outcome_unknown,
    record_refused,
    record_rejected,
)
from campaigns.lifecycle.locking import lock_attempts
from campaigns.lifecycle.outcomes import (
    OutcomeResult,
    apply_call_outcome,
    apply_call_outcome_locked,
    apply_progress,
    apply_progress_locked,
    apply_sms_outcome,
    apply_sms_outcome_locked,
    next_retry_time,
)
from campaigns.lifecycle.reconcile import CallLookup, ReconcileReport, reconcile_expired_leases

__all__ = [
    "CallLookup",
    "ClaimCheck",
    "Claimed",
    "Defer",
    "DoNotContactCheck",
    "FrequencyCapCheck",
    "OutcomeResult",
    "PacingCheck",
    "ReconcileReport",
    "Suppress",
    "apply_call_outcome",
    "apply_call_outcome_locked",
    "apply_progress",
    "apply_progress_locked",
    "apply_sms_outcome",
    "apply_sms_outcome_locked",
    "begin_dispatch",
    "begin_dispatch_many",
    "claim_due_events",
    "default_checks",
    "lock_attempts",
    "mark_sending",
    "next_due_at",
    "next_retry_time",
    "reconcile_expired_leases",
    "record_dispatched_many",
    "record_outcome_unknown",
    "record_refused",
    "record_rejected",
    "window_check",
]

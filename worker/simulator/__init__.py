"""A fake Telnyx HTTP server. This is a TEST DOUBLE, not Telnyx: tests, the demo and benchmarks use it.

It implements the small part of the Telnyx API the worker calls (``/v2/texml/ai_calls/{connection_id}``,
``/v2/calls``, ``/v2/messages``, ``GET /v2/calls/{id}``, the TeXML call list ``GET
/v2/texml/Accounts/{account_sid}/Calls`` filtered by ``From`` / ``To`` / ``StartTime_gt``, where a call shows
``list_delay`` seconds after it was placed: Telnyx calls that list eventually consistent; the message detail
records search ``GET /v2/detail_records?filter[record_type]=messaging`` filtered by ``cli`` / ``cld`` /
``direction`` / ``created_at`` ``gte``, where an accepted message shows ``list_delay`` seconds later), decides
each call's or message's outcome from a script or a random mix, and posts **signed** status callbacks and
webhooks back, so the real provider adapters and the webhook path run end to end. It keeps everything in memory
and answers any non-empty bearer token.

Control endpoints (no auth): ``POST /_simulator/script``, ``GET /_simulator/calls``,
``GET /_simulator/messages``, ``GET /_simulator/public-key``, ``POST /_simulator/reset``, ``GET /healthz``,
``POST /_simulator/inbound`` (a recipient texts back: signed ``message.received``) and ``POST /_simulator/block``.

Opt-outs work like Telnyx's default messaging profile: an inbound STOP, STOPALL, STOP ALL, UNSUBSCRIBE, CANCEL,
END or QUIT creates a block rule for the sender (START or UNSTOP lifts it), and a message to a blocked number is
refused with error ``40300`` "Blocked due to STOP message". ``/_simulator/block`` creates a rule without a webhook.

Outcomes:

- calls: ``completed``, ``busy``, ``no-answer``, ``failed``, ``canceled``, and ``machine`` (voicemail),
  ``screened`` (a phone's call-screening assistant), ``fax``: all three ``completed`` on the network, reported as
  such (TeXML ``AnsweredBy``, Call Control ``call.machine.*`` webhooks) only when the request asked for
  answering-machine detection; every answered call has a conversation id and a ``call.conversation.ended``
  webhook; ``channel_limit`` (accepted, then ``failed`` with the SIP 403 "User channel limit exceeded" D1);
  ``completed_late`` (answered and ended like ``completed``, and a status query says it is over, but its
  terminal callback, TeXML ``completed`` / Call Control ``call.hangup``, and ``call.conversation.ended`` are held
  back for ``late_callback_delay`` seconds: a reconciler that closed the attempt as unknown meanwhile gets the
  late truth);
- messages (the final ``to[0].status`` of ``message.finalized``): ``delivered``, ``delivery_failed``,
  ``sending_failed``, ``expired`` (error 40005), ``delivery_unconfirmed``;
- provider errors (both): ``http_401`` / ``http_403`` (the account refused; as the script's ``default``, every
  authenticated request), ``http_429`` (429, nothing placed), ``http_503`` (503, nothing placed), ``http_500``
  (placed: logged with its provider id and its callbacks sent, then answered with a real 500), ``http_422``
  (422 "Invalid destination", nothing placed) and ``timeout`` (placed and completed/delivered, but the HTTP
  answer is held for ``response_delay_on_timeout`` seconds so the client times out).

A call outcome given to a message, or the reverse, is translated: ``completed`` means delivered, ``busy`` and
``no-answer`` mean ``delivery_failed``, ``failed`` and ``canceled`` mean ``sending_failed``, ``completed_late``
means delivered (on time); ``delivered`` and ``delivery_unconfirmed`` mean ``completed`` and the three message
failures mean ``failed``.

Concurrency: the server runs on one asyncio event loop. Every read-modify-write of the shared state (dedupe
tables, script queues, logs) happens in plain synchronous methods with no ``await`` inside, so no other
coroutine can interleave with it. Callbacks for one call are sent sequentially by one task per call.

The package: ``config`` (knobs, outcome names, mix, script), ``state`` (what it received and remembers),
``delivery`` (signed callbacks and webhooks, their lanes), ``errors`` (Telnyx's error envelope, request checks),
``routes`` (the endpoints), ``app`` (``create_app``, ``run``). It exports ``SimulatorConfig``, ``parse_mix``,
``create_app``, ``run`` and the outcome names. A new outcome is a name in ``config`` and its effect in
``errors.injected_error`` (a provider error) or ``delivery`` (what the callbacks report).
"""

from worker.simulator.app import create_app, run
from worker.simulator.config import (
    CALL_OUTCOMES,
    ERROR_OUTCOMES,
    MESSAGE_OUTCOMES,
    OUTCOMES,
    PRIVATE_KEY_ENV,
    SimulatorConfig,
    parse_mix,
)

__all__ = [
    "CALL_OUTCOMES",
    "ERROR_OUTCOMES",
    "MESSAGE_OUTCOMES",
    "OUTCOMES",
    "PRIVATE_KEY_ENV",
    "SimulatorConfig",
    "create_app",
    "parse_mix",
    "run",
]

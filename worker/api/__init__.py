"""The HTTP API: the Telnyx-compatible scheduled events, campaigns, the do-not-contact list, recurring
definitions, the signed Telnyx webhooks, health and metrics.

``create_app`` assembles it (``app``); each resource has its router module (``events``, ``campaigns``,
``suppressions``, ``recurring``, ``operations``, ``webhooks`` with its bare-ASGI fast path), its models in
``schemas``, and shares ``deps`` (runtime, unit of work, token, paging) and ``errors`` (the Telnyx error
envelope). Queries and rules live in ``campaigns``: a route parses, calls the domain and shapes the answer.
"""

from worker.api.app import CampaignsAPI, create_app

__all__ = ["CampaignsAPI", "create_app"]

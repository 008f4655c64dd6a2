"""Which adapter serves which channel, built from the settings; the probe of a held account."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from campaigns.settings import Settings
from campaigns.states import Channel
from campaigns.telephony.call_control import TelnyxCallControl
from campaigns.telephony.messaging import TelnyxMessaging
from campaigns.telephony.protocol import Telephony
from campaigns.telephony.texml import TelnyxTexml
from campaigns.telephony.transport import HttpAdapter, get_json


@dataclass
class Providers:
    """The provider used for each channel."""

    calls: Telephony
    sms: Telephony

    def for_channel(self, channel: str) -> Telephony:
        return self.sms if channel == Channel.SMS_CHAT else self.calls

    def by_name(self, name: str) -> Telephony:
        for candidate in (self.calls, self.sms):
            if candidate.name == name:
                return candidate
        return self.calls


def providers_from_settings(settings: Settings, client: httpx.Client | None = None) -> Providers:
    """TeXML (or Call Control, when ``CAMPAIGNS_CALL_PROVIDER=call_control``) for calls, messaging for SMS; one
    shared client per thread unless ``client`` is given (tests inject one)."""
    calls: Telephony = (
        TelnyxCallControl(settings, client)
        if settings.call_provider == "call_control"
        else TelnyxTexml(settings, client)
    )
    return Providers(calls=calls, sms=TelnyxMessaging(settings, client))


def probe_path(provider: Telephony, reason: str) -> str:
    """The harmless authenticated GET that tells whether the provider accepts the account again.

    ``GET /balance`` for a key: read-only, needs no product resource, and is what Telnyx itself suggests as the
    first authentication check (developers.telnyx.com/docs/development/api-fundamentals/first-api-request and
    .../troubleshooting). For a connection or messaging profile, a GET of that very resource
    (``/texml_applications/{id}``, ``/call_control_applications/{id}``, ``/messaging_profiles/{id}``: the official
    SDK's ``resources/texml_applications.py``, ``call_control_applications.py``, ``messaging_profiles``). None of
    them dials or sends anything.
    """
    settings = provider.settings if isinstance(provider, HttpAdapter) else None
    resource: str | None = None
    if settings is not None and reason == "connection":
        if isinstance(provider, TelnyxTexml) and settings.telnyx_texml_app_id:
            resource = f"texml_applications/{settings.telnyx_texml_app_id}"
        elif isinstance(provider, TelnyxCallControl) and settings.telnyx_connection_id:
            resource = f"call_control_applications/{settings.telnyx_connection_id}"
    elif settings is not None and reason == "messaging_profile" and settings.telnyx_messaging_profile_id:
        resource = f"messaging_profiles/{settings.telnyx_messaging_profile_id}"
    return resource or "balance"


def probe(provider: Telephony, reason: str) -> None:
    """One probe through ``provider``; returns when it accepts, raises the typed error it answers otherwise.

    An adapter that is not an HTTP one (a test double) probes through its own ``probe(reason)``, if it has one.
    """
    if not isinstance(provider, HttpAdapter):
        own = getattr(provider, "probe", None)
        if callable(own):
            own(reason)
        return
    get_json(provider.client, probe_path(provider, reason), missing=reason if reason != "api_key" else None)

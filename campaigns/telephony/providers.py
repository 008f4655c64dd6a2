"""Which adapter serves which channel, built from the settings."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from campaigns.settings import Settings
from campaigns.states import Channel
from campaigns.telephony.call_control import TelnyxCallControl
from campaigns.telephony.messaging import TelnyxMessaging
from campaigns.telephony.protocol import Telephony
from campaigns.telephony.texml import TelnyxTexml


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

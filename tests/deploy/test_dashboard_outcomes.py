"""The dashboard shows the outcomes of issue 17: a voicemail rate, channel-limited attempts, and a campaign
selector with connect rate and outcomes per campaign (every metric they read is checked to exist by
``test_deploy.test_every_metric_in_the_dashboard_and_alerts_is_exposed``)."""

from __future__ import annotations

import json
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "campaigns.json"


def test_outcome_panels_and_the_campaign_selector() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: p for p in dashboard["panels"]}
    exprs = {title: " ".join(t["expr"] for t in p.get("targets", [])) for title, p in panels.items()}
    assert 'outcome="voicemail"' in exprs["Voicemail rate"]
    assert 'outcome="channel_limited"' in exprs["Channel-limited"]
    (selector,) = dashboard["templating"]["list"]
    assert selector["name"] == "campaign" and "campaigns_campaign_events" in selector["definition"]
    for title in ("Connect rate ($campaign)", "Outcomes ($campaign)"):
        assert 'campaign_id=~"$campaign"' in exprs[title] and "campaigns_campaign_attempts" in exprs[title]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))

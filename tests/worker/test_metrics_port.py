"""The worker's and the scheduler's metrics port: with ``CAMPAIGNS_METRICS_TOKEN`` set, ``/metrics`` answers only
the bearer of that token, as the api's does; ``/healthz`` stays open for liveness probes."""

from __future__ import annotations

import httpx

from worker.metrics_server import serve_metrics


def test_the_metrics_port_requires_the_token_when_one_is_set() -> None:
    server = serve_metrics(0, "127.0.0.1", health=lambda: (True, "looping"), token="s3cret-metrics")
    assert server is not None
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        refused = httpx.get(f"{base}/metrics", timeout=5)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "campaigns_" not in refused.text
        wrong = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        ok = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret-metrics"}, timeout=5)
        assert ok.status_code == 200 and "campaigns_" in ok.text
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert (health.status_code, health.text) == (200, "looping\n")
    finally:
        server.shutdown()
        server.server_close()


def test_without_a_token_the_metrics_port_is_open() -> None:
    server = serve_metrics(0, "127.0.0.1")
    assert server is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
        assert response.status_code == 200 and "campaigns_" in response.text
    finally:
        server.shutdown()
        server.server_close()

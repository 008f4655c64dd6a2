"""Wiring: Celery app and tasks, scheduler loop, HTTP API, CLI and the Telnyx simulator."""

"""Outbound campaign worker: the domain (no Celery, no FastAPI here)."""

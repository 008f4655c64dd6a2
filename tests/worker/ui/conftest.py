"""The console's fixtures: the runtime with an API token, a browser-like client, and one signed in."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.worker.ui.test_console_pages import TOKEN, sign_in
from worker.api import create_app
from worker.runtime import Runtime


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    return dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"api_token": TOKEN}))


@pytest.fixture
def browser(app_runtime: Runtime) -> Iterator[TestClient]:
    """A client that is not signed in, with redirects left for the test to follow."""
    with TestClient(create_app(app_runtime, enqueue_import=lambda _: None), follow_redirects=False) as c:
        yield c


@pytest.fixture
def signed_in(browser: TestClient) -> TestClient:
    assert sign_in(browser) == "/ui"
    return browser

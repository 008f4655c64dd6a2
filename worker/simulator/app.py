"""The simulator app: its state, its callback delivery and its routes, put together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from worker.simulator.config import SimulatorConfig
from worker.simulator.delivery import Delivery
from worker.simulator.errors import ApiError
from worker.simulator.records import router as records_router
from worker.simulator.routes import router
from worker.simulator.state import SimulatorState


def create_app(config: SimulatorConfig) -> FastAPI:
    """Build the simulator app. Raises ``ValueError`` for a bad ``mix`` or private key."""
    state = SimulatorState(config)
    delivery = Delivery(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await delivery.close()

    app = FastAPI(title="Telnyx simulator (test double)", lifespan=lifespan)
    app.state.simulator = state
    app.state.delivery = delivery

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    app.include_router(router)
    app.include_router(records_router)
    return app


def run(host: str = "127.0.0.1", port: int = 8081, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    uvicorn.run(create_app(config or SimulatorConfig()), host=host, port=port, log_level="warning")

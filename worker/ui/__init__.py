"""The operator console: server-rendered pages at ``/ui`` over the same domain calls as the HTTP API.

``install(app)`` adds its routers (``campaign_pages``: sign-in, campaigns, a campaign, an event; ``new_campaign``:
the form with ``Check`` and ``Create campaign``; ``lists``: do-not-contact and recurring), its static files
(``static/``: one stylesheet, one small script; no build step), ``/`` → ``/ui``, and the answers for a browser
that is not signed in (to the sign-in page) or posted a form without its CSRF token (403). Sessions and CSRF are
in ``auth``; templates (``templates/``) and their filters in ``common``.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from worker.ui.auth import CsrfRejected, SignInRequired
from worker.ui.campaign_pages import router as campaign_router
from worker.ui.common import STATIC, render
from worker.ui.lists import router as lists_router
from worker.ui.new_campaign import router as new_campaign_router

__all__ = ["install"]


async def _sign_in_first(request: Request, exc: Exception) -> Response:
    if request.method != "GET":
        return render(request, "forbidden.html", status_code=403, why="You are signed out: sign in and try again.")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/sign-in?next={quote(target)}", status_code=303)


async def _csrf_rejected(request: Request, exc: Exception) -> Response:
    why = "The form was not sent from this console (its security token is missing or stale): reload and retry."
    return render(request, "forbidden.html", status_code=403, why=why)


def install(app: FastAPI) -> None:
    """Serve the console at ``/ui`` (and redirect ``/`` there)."""
    # The new-campaign form's fixed path before the campaign page's ``/campaigns/{id}``.
    app.include_router(new_campaign_router)
    app.include_router(campaign_router)
    app.include_router(lists_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(SignInRequired, _sign_in_first)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

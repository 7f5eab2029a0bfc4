"""Only the paths the service serves reach BentoML: any other is answered 404 here, first.

BentoML's HTTP metrics label every request with its raw path, unknown ones included, so a
client sending random paths would add series without bound (20 per path) and grow the
Prometheus multiprocess files in BentoML's home with them. Its metrics middleware is the
outermost of its ASGI stack, ahead of any middleware a service adds; so the service's app is
wrapped from outside (`PathBoundService.to_asgi`). What is refused here is counted in
`shiftwatch_requests_rejected_total{endpoint="other",reason="unknown_path"}`: one series.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from bentoml import Service
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service import prometheus

# Answered by the service's own middlewares, before BentoML's router.
MIDDLEWARE_PATHS = frozenset({"/models"})


def served_paths(app) -> frozenset[str]:
    """Every path `app` (BentoML's Starlette app) answers: its routes, and the files of its
    static mounts (the docs page's assets: a fixed set)."""
    paths = set(MIDDLEWARE_PATHS)
    for route in app.router.routes:
        if isinstance(route, Route):
            paths.add(route.path)
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            root = Path(route.app.directory)
            paths |= {f"{route.path}/{p.relative_to(root)}" for p in root.rglob("*") if p.is_file()}
        elif isinstance(route, Mount):  # a mounted app answers any path below it
            raise ValueError(f"a mounted app at {route.path!r} has no fixed set of paths")
    return frozenset(paths)


class KnownPaths:
    """ASGI: a path outside `served` gets a 404 without reaching `app`."""

    def __init__(self, app, served: frozenset[str]) -> None:
        self.app = app
        self.served = served

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in self.served:
            prometheus.rejected.labels(endpoint="other", reason="unknown_path").inc()
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await JSONResponse({"error": "not found"}, status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@attrs.define
class PathBoundService(Service):
    """BentoML's service, its ASGI app behind `front` (service.py: the limits and the lean
    routes) and `KnownPaths`. No attribute of its own, so a service made by `bentoml.service`
    can take this class (see service.py)."""

    def to_asgi(self, is_main: bool = True):
        app = super().to_asgi(is_main)
        return KnownPaths(self.front(app), served_paths(app))

    def front(self, app):
        """What serves ahead of BentoML's own app; override it."""
        return app

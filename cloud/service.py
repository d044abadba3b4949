"""The UPS-RS worklist service: a standalone ASGI app (Starlette, served by uvicorn) behind nginx.

Owns the HTTP/WebSocket face of the worklist (PS3.18 ch. 11) at ``/dicom-web/workitems``: create, search,
retrieve, update (``?transaction=``), change state, cancel request, (un)subscribe, and the event channel
``/dicom-web/subscribers/{AET}`` (WebSocket) that pushes state changes and new assignments. Basic auth
against the configured users. The rules themselves live in cloud.ups; routing of new studies in
cloud.follower. Run as ``python -m cloud.service --dir DIR`` (the supervisor does this), reading the
runtime file the supervisor wrote (DIR/run/runtime.json).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from cloud.auth import REALM, Authenticator
from cloud.config import CloudConfig, load_config
from cloud.ups import T_STATE, T_TUID, Event, UpsError, WorkitemStore, parse_body, text

log = logging.getLogger("readroom.cloud.service")
DICOM_JSON = "application/dicom+json"


class EventHub:
    """Open WebSocket connections per subscriber AE title, and delivery of events to them."""

    def __init__(self, store: WorkitemStore):
        self.store = store
        self.sockets: dict[str, set[WebSocket]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    async def publish(self, events: list[Event]) -> None:
        for ev in events:
            aets = self.store.subscribers_for(ev)
            payload = json.dumps(ev.message)
            for aet in aets:
                for ws in list(self.sockets.get(aet, ())):
                    try:
                        await ws.send_text(payload)
                    except Exception:  # noqa: BLE001 - a dead socket is dropped; the client reconnects or polls
                        self.sockets.get(aet, set()).discard(ws)

    def publish_threadsafe(self, events: list[Event]) -> None:
        if self.loop and events:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.publish(events)))


def _error(e: UpsError) -> Response:
    return JSONResponse({"error": e.message}, status_code=e.status,
                        headers={"Warning": f'299 ReadRoom "{e.message[:200]}"'})


def _dicom_json(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data), status_code=status, media_type=DICOM_JSON, headers=headers)


def _clean(ds: dict) -> dict:
    return {k: v for k, v in ds.items() if k != T_TUID}


def create_app(store: WorkitemStore, config: CloudConfig, auth: Authenticator,
               follower_factory=None) -> Starlette:
    hub = EventHub(store)

    def user_of(request) -> str | None:
        return auth.user_for(request.headers.get("authorization"))

    def unauthorized() -> Response:
        return JSONResponse({"error": "authentication required"}, status_code=401,
                            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})

    async def body_of(request: Request) -> dict:
        ctype = request.headers.get("content-type", DICOM_JSON).split(";")[0].strip().lower()
        if ctype not in (DICOM_JSON, "application/json", ""):
            raise UpsError(415, f"unsupported content type {ctype}: send {DICOM_JSON}")
        return parse_body(await request.body())

    def guarded(fn):
        async def handler(request: Request) -> Response:
            if user_of(request) is None:
                return unauthorized()
            try:
                return await fn(request)
            except UpsError as e:
                return _error(e)
        return handler

    @guarded
    async def search(request: Request) -> Response:
        params, limit, offset = [], None, 0
        for k, v in request.query_params.multi_items():
            if k == "limit":
                limit = _int(v, "limit")
            elif k == "offset":
                offset = _int(v, "offset")
            elif k in ("includefield", "fuzzymatching"):
                continue
            else:
                params.append((k, v))
        items = await asyncio.to_thread(store.search_raw, params, limit, offset)
        body = "[" + ",".join(i if isinstance(i, str) else json.dumps(_clean(i)) for i in items) + "]"
        return Response(body, media_type=DICOM_JSON)

    @guarded
    async def create(request: Request) -> Response:
        ds = await body_of(request)
        uid, events = store.create(ds, request.query_params.get("workitem"))
        await hub.publish(events)
        return Response(status_code=201, headers={"Location": f"{_base(request)}/workitems/{uid}"})

    @guarded
    async def retrieve(request: Request) -> Response:
        return _dicom_json(_clean(store.get(request.path_params["uid"])))

    @guarded
    async def update(request: Request) -> Response:
        ds = await body_of(request)
        if not request.query_params.get("transaction") and not auth.may_schedule(user_of(request)):
            state = None
            with contextlib.suppress(UpsError):      # unknown workitem: the store's own 404 below
                state = text(store.get(request.path_params["uid"]), T_STATE)
            if state == "SCHEDULED":
                raise UpsError(403, "only a scheduler can change a scheduled workitem (assignment, priority); "
                               "readers update the workitems they hold")
        events = store.update(request.path_params["uid"], ds, request.query_params.get("transaction"))
        await hub.publish(events)
        return Response(status_code=200)

    @guarded
    async def change_state(request: Request) -> Response:
        ds = await body_of(request)
        if text(ds, T_STATE) == "IN PROGRESS" and not auth.may_claim(user_of(request)):
            raise UpsError(403, "only readers can claim a reading task; this account is not a reader")
        events = store.change_state(request.path_params["uid"], text(ds, T_TUID), text(ds, T_STATE))
        await hub.publish(events)
        return Response(status_code=200)

    @guarded
    async def cancel_request(request: Request) -> Response:
        raw = await request.body()
        ds = parse_body(raw) if raw.strip() else {}
        reason = text(ds, "00741238")
        extra = {k: v for k, v in ds.items() if k in ("0074100E", "00741236", "00741238", "0074100A")}
        events = store.cancel_request(request.path_params["uid"], reason, extra)
        await hub.publish(events)
        return Response(status_code=202)

    @guarded
    async def subscription(request: Request) -> Response:
        uid, aet = request.path_params["uid"], request.path_params["aet"]
        if request.method == "DELETE":
            store.unsubscribe(aet, uid)
            return Response(status_code=200)
        flt = [(k, v) for k, v in request.query_params.multi_items() if k not in ("deletionlock",)]
        if "filter" in request.query_params:  # ?filter=Key=Value,Key2=Value2 form
            flt = [tuple(p.split("=", 1)) for p in request.query_params["filter"].split(",") if "=" in p]
        store.subscribe(aet, uid, flt)
        return Response(status_code=201)

    @guarded
    async def suspend(request: Request) -> Response:
        store.unsubscribe(request.path_params["aet"], request.path_params["uid"])
        return Response(status_code=200)

    async def events_socket(ws: WebSocket) -> None:
        if auth.user_for(ws.headers.get("authorization")) is None:
            await ws.close(code=1008)
            return
        aet = ws.path_params["aet"]
        await ws.accept()
        hub.sockets.setdefault(aet, set()).add(ws)
        try:
            while True:
                await ws.receive_text()   # clients may send pings/text; we only push
        except WebSocketDisconnect:
            pass
        finally:
            hub.sockets.get(aet, set()).discard(ws)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        hub.loop = asyncio.get_running_loop()
        follower = follower_factory(hub.publish_threadsafe) if follower_factory else None
        if follower:
            follower.start()
        try:
            yield
        finally:
            if follower:
                await asyncio.to_thread(follower.stop)

    w = "/dicom-web/workitems"
    routes = [
        Route("/_health", health),
        Route(w, search, methods=["GET"]),
        Route(w, create, methods=["POST"]),
        Route(w + "/{uid}", retrieve, methods=["GET"]),
        Route(w + "/{uid}", update, methods=["POST"]),
        Route(w + "/{uid}/state", change_state, methods=["PUT"]),
        Route(w + "/{uid}/state/{requester}", change_state, methods=["PUT"]),
        Route(w + "/{uid}/cancelrequest", cancel_request, methods=["POST"]),
        Route(w + "/{uid}/cancelrequest/{requester}", cancel_request, methods=["POST"]),
        Route(w + "/{uid}/subscribers/{aet}", subscription, methods=["POST", "DELETE"]),
        Route(w + "/{uid}/subscribers/{aet}/suspend", suspend, methods=["POST"]),
        WebSocketRoute("/dicom-web/subscribers/{aet}", events_socket),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app


def _int(v: str, name: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise UpsError(400, f"{name} must be a whole number") from None
    if n < 0:
        raise UpsError(400, f"{name} must not be negative")
    return n


def _base(request: Request) -> str:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    host = request.headers.get("host", request.url.netloc)
    return f"{proto}://{host}/dicom-web"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud.service", description="ReadRoom UPS-RS worklist service")
    ap.add_argument("--dir", required=True, type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s worklist %(levelname)s %(name)s: %(message)s")
    run_dir = args.dir / "run"
    rt = json.loads((run_dir / "runtime.json").read_text())
    config = load_config(rt.get("config"))
    internal = {rt["internal_user"]: rt["internal_password"]}
    store = WorkitemStore(args.dir / "worklist" / "worklist.sqlite")
    auth = Authenticator(config.users, internal)

    def follower_factory(publish):
        from cloud.follower import OrthancFollower

        return OrthancFollower(store, config, rt["orthanc_url"], (rt["internal_user"], rt["internal_password"]),
                               rt["base_url"], args.dir / "outbound", publish)

    app = create_app(store, config, auth, follower_factory)
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(rt["worklist_port"]), log_level="warning",
                ws="websockets-sansio", timeout_graceful_shutdown=3, proxy_headers=False)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

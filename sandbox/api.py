"""The stack's HTTP API (FastAPI): the migration guide's `POST /api/v1/run` and friends.

`python -m sandbox.api` serves it with uvicorn on API_HOST:API_PORT
(127.0.0.1:8000 unless told otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field

from sandbox import __version__
from sandbox.bus import Bus, BusError, BusUnavailable, MessageTooLarge, RequestTimeout, make_bus
from sandbox.bus.presence import known_agents
from sandbox.bus.reconnect import Backoff
from sandbox.config import ConfigError, Settings, load_settings
from sandbox.laddr_compat import matching_note
from sandbox.program import run_program
from sandbox.protocol import AGENT_NAME_RE, Response

log = logging.getLogger("sandbox.api")


class InitialTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=100, pattern=AGENT_NAME_RE.pattern, examples=["researcher"])
    inputs: dict[str, Any] = Field(default_factory=dict, examples=[{"query": "test"}])


class RunRequest(BaseModel):
    workflow_name: str = Field(min_length=1, max_length=200, examples=["test_workflow"])
    initial_task: InitialTask
    timeout: float = Field(default=30.0, gt=0, le=600, description="seconds to wait for the response")


class SubmitRequest(BaseModel):
    agent: str = Field(min_length=1, max_length=100, pattern=AGENT_NAME_RE.pattern)
    inputs: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error the API answers with: one sentence for a person."""

    detail: str


class HealthBody(BaseModel):
    status: str
    backend: str
    broker: str
    version: str


ERRORS = {
    401: "missing or wrong X-API-Key header",
    404: "unknown agent, or no response for that task (yet)",
    413: "the payload is over the broker's message size limit",
    422: "the request body or a parameter is invalid",
    503: "the broker is unreachable right now; retry later",
    504: "the agent did not answer within the timeout",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with (all with an ErrorBody)."""
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}


def response_body(response: Response, **extra: Any) -> dict[str, Any]:
    note = matching_note(response)
    return {**response.to_dict(), **extra, **({"note": note} if note else {})}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    async def prepare(bus: Bus) -> None:
        await bus.connect()
        # The api is the one service every stack starts: it lays out the topics.
        await bus.ensure_topology(settings.agents, settings.kafka_partitions)
        await bus.follow_responses()  # GET /api/v1/responses/{id} sees all from now on

    async def keep_trying(app: FastAPI, bus: Bus) -> None:
        """The broker was not there at start: answer 503 meanwhile and connect as soon as it is."""
        backoff, started = Backoff(first=0.5, most=5.0), time.monotonic()
        while True:
            await backoff.sleep()
            try:
                await prepare(bus)
            except Exception as exc:  # BusError, or whatever a half-started broker answers
                log.warning("broker at %s still unreachable (%s); retrying in %.1fs",
                            settings.broker_address, exc, backoff.delay)
                continue
            app.state.bus_ready = True
            log.warning("connected to %s at %s after %.1fs", settings.queue_backend, settings.broker_address,
                        time.monotonic() - started)
            return

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        bus = make_bus(settings)
        app.state.bus, app.state.bus_ready = bus, False
        starting: asyncio.Task[None] | None = None
        try:
            await prepare(bus)
            app.state.bus_ready = True
        except BusError as exc:
            log.warning("broker at %s unreachable (%s); answering 503 and reconnecting in the background",
                        settings.broker_address, exc)
            starting = asyncio.create_task(keep_trying(app, bus))
        log.info("api serving on %s (%s)", settings.queue_backend, settings.broker_address)
        try:
            yield
        finally:
            if starting is not None:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            await bus.close()

    app = FastAPI(title="laddr-sandbox API", version=__version__, lifespan=lifespan)

    def bus_of(request: Request) -> Bus:
        if not request.app.state.bus_ready:
            raise BusUnavailable(f"the {settings.queue_backend} broker at {settings.broker_address} is not "
                                 "reachable yet; the api keeps trying")
        return request.app.state.bus

    async def require_key(x_api_key: str | None = Header(default=None)) -> None:
        if settings.api_key and x_api_key != settings.api_key:
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header")

    guarded = [Depends(require_key)]

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {problems}"})

    @app.exception_handler(BusError)
    async def bus_failed(_: Request, exc: BusError) -> JSONResponse:
        status = 413 if isinstance(exc, MessageTooLarge) else 504 if isinstance(exc, RequestTimeout) else 503
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI: a body that is not even text (e.g. not UTF-8)
            return JSONResponse(status_code=422, content={"detail": f"invalid request: body: {exc.detail} (send UTF-8 JSON)"})
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc.detail)}, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: still one JSON line for the caller, the traceback in our log.
        log.error("unexpected error on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse(status_code=500, content={"detail": f"internal error ({type(exc).__name__}); see the api log"})

    async def known_agent(bus: Bus, agent: str) -> None:
        if agent in await bus.agents():
            return
        known = await known_agents(bus, ())  # Laddr keeps its Kafka registry in memory: topics tell
        if agent not in known:
            raise HTTPException(status_code=404, detail=f"unknown agent {agent!r}; known: {', '.join(known) or 'none yet'}")

    @app.post("/api/v1/run", dependencies=guarded, responses=errors(401, 404, 413, 422, 503, 504))
    async def run(body: RunRequest, request: Request) -> dict[str, Any]:
        """Send the initial task to its agent and answer with that agent's response."""
        bus = bus_of(request)
        await known_agent(bus, body.initial_task.agent)
        started = time.perf_counter()
        payload = {**body.initial_task.inputs, "workflow_name": body.workflow_name}
        response = await bus.request(body.initial_task.agent, payload, timeout=body.timeout)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return response_body(response, workflow_name=body.workflow_name, latency_ms=latency_ms)

    @app.post("/api/v1/tasks", status_code=202, dependencies=guarded, responses=errors(401, 404, 413, 422, 503))
    async def submit(body: SubmitRequest, request: Request) -> dict[str, Any]:
        """Queue a task without waiting; fetch its response later by id."""
        bus = bus_of(request)
        await known_agent(bus, body.agent)
        task = await bus.publish_task(body.agent, body.inputs)
        return {"task_id": task.task_id, "agent": body.agent, "status": "queued"}

    @app.get("/api/v1/responses/{task_id}", dependencies=guarded, responses=errors(401, 404, 422, 503))
    async def get_response(task_id: str, request: Request) -> dict[str, Any]:
        response = await bus_of(request).get_response(task_id)
        if response is None:
            raise HTTPException(status_code=404, detail=f"no response for task {task_id!r} (yet)")
        return response_body(response)

    @app.get("/api/v1/agents", dependencies=guarded, responses=errors(401, 422, 503))
    async def agents(request: Request) -> dict[str, Any]:
        registered = await bus_of(request).agents()
        now = time.time()
        return {
            "agents": [
                {
                    "name": info.name,
                    "role": info.role,
                    "goal": info.goal,
                    "tools": info.tools,
                    "status": info.status,
                    "last_heartbeat": info.last_heartbeat,
                    "seconds_since_heartbeat": round(now - info.last_heartbeat, 1),
                }
                for info in registered.values()
            ]
        }

    @app.get("/api/v1/health", response_model=HealthBody, responses={503: {"model": HealthBody, "description": "the broker is unreachable"}})
    async def health(request: Request) -> JSONResponse:
        ok = request.app.state.bus_ready and await request.app.state.bus.ping()
        return JSONResponse(
            status_code=200 if ok else 503,
            content={
                "status": "ok" if ok else "broker unreachable",
                "backend": settings.queue_backend,
                "broker": settings.broker_address,
                "version": __version__,
            },
        )

    return app


def main() -> int:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    def serve(settings: Settings) -> None:
        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                    log_level=os.environ.get("LOG_LEVEL", "info").lower())

    return run_program(load_settings, serve, bad_input=(ConfigError,), failed=(BusUnavailable,))


if __name__ == "__main__":
    sys.exit(main())

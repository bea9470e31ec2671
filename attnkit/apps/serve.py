"""`attnkit serve DIR`: a model behind HTTP, with FastAPI: attnkit's own endpoints (attnkit.apps.routes), the OpenAI
API that existing clients speak (attnkit.apps.openai_api), and the pages, each group a router that `create_app`
assembles; concurrent requests are gathered into batches (attnkit.apps.batcher).

Only what the model serves is registered, so /docs lists it and nothing else; a path of attnkit's that this model
does not serve is a 404 saying what it serves. GET / is a page to try the model (try_page.html: its inputs, its answer
and its attention; a chat with a chat model), /docs and /redoc the API, offline.

Bad input is a 4xx with one line that names the field, never a 500: 413 for a body or a text over the limits, 422 for
invalid JSON, a missing, mistyped or unknown field (`texts[1]: Input should be a valid string`; a field of another
task's requests also says which this model takes), 400 for a request the model cannot serve; the OpenAI endpoints
answer OpenAI's {"error": {"message", "type", "param", "code"}} (400 for a request that is not valid). A text of more
tokens than the model reads (`Pipeline.max_input_tokens`) is cut as `attnkit predict` cuts it (`too_long="truncate"`),
or refused with 413 before it is batched (`"reject"`). On SIGTERM or Ctrl-C, uvicorn finishes the requests in flight.

Who gets in: with an API key, every endpoint that runs or describes the model wants `Authorization: Bearer <key>`
(401); /health, the pages and the API's schema do not (open_without_key); a request gets 503 while
`max_connections` are open; a request that takes over `request_timeout_s` to arrive is disconnected.
"""

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import socket
import sys
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from attnkit.apps.batcher import Batcher, Served
from attnkit.apps.limits import Limits
from attnkit.apps.openai_api import KEY_CODE, RequestError, error_response, openai_routes
from attnkit.apps.requests import validation_message
from attnkit.apps.routes import own_routes, posts_served
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline

__all__ = ["Batcher", "create_app", "serve", "startup_line"]
DOCS_ASSETS = "/static-offline-docs/"  # where fastapi-offline serves Swagger UI's and ReDoc's scripts
OPENAI = "/v1/"  # the OpenAI API's paths, whose errors take its shape
# every path of attnkit's own and OpenAI's that some model serves: one this model does not is a 404 that says so
KNOWN = ("/predict", "/generate", "/generate_stream", "/encode", "/attention", "/v1/completions",
         "/v1/chat/completions", "/v1/embeddings")  # fmt: skip


def startup_line(pipeline: Pipeline, where: str, host: str, port: int) -> str:
    """The line `attnkit serve` prints before it starts: the model, what it is, where and which endpoints."""
    posts = posts_served(pipeline) + openai_paths(pipeline)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    gets = (
        ["/ (a page to try it)"] + (["/attention"] if "attention" in pipeline.task.verbs else []) + ["/info", "/docs"]
    )
    endpoints = (f"POST {', '.join(posts)}; " if posts else "") + f"GET {', '.join(gets)}"
    engine = "" if pipeline.engine == "torch" else f" run by {pipeline.engine}"
    return f"attnkit serve: {where} ({pipeline.task.describe()}){engine} on {url} - {endpoints}"


def openai_paths(pipeline: Pipeline) -> list[str]:
    """The OpenAI API's POST endpoints a model serves."""
    verbs = pipeline.task.verbs
    paths = ["/v1/completions"] if "generate" in verbs else []
    paths += ["/v1/chat/completions"] if pipeline.chats else []
    return paths + (["/v1/embeddings"] if "encode" in verbs else [])


def create_app(
    pipeline: Pipeline, limits: Limits | None = None, where: str = "", api_key: str | None = None
) -> FastAPI:
    """The FastAPI application serving `pipeline` (its model already on its device), within `limits` (default:
    Limits()); with `api_key`, every endpoint but open_without_key's wants `Authorization: Bearer <api_key>`."""
    served = Served(pipeline, limits or Limits(), where)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        yield
        served.close()  # uvicorn has finished the requests in flight

    # Swagger UI at /docs and ReDoc at /redoc from fastapi-offline's copies: FastAPI's own pages load them from a CDN,
    # blank without internet
    described = "attnkit" if api_key else f"attnkit serving {where}"  # the schema is open to all
    app = FastAPIOffline(title="attnkit", description=described, lifespan=lifespan)
    _answer_errors(app, served)
    _guard(app, served.limits, api_key)
    app.include_router(_pages())
    app.include_router(own_routes(served))
    app.include_router(openai_routes(served))
    return app


def _pages():  # noqa: ANN202 - an APIRouter
    from fastapi import APIRouter

    router = APIRouter()
    page = files("attnkit.apps").joinpath("try_page.html").read_text(encoding="utf-8")

    @router.get("/", include_in_schema=False)
    async def root() -> HTMLResponse:
        """The page to try the model: its inputs, its answer and its attention, or a chat, from the endpoints."""
        return HTMLResponse(page)

    return router


def _answer_errors(app: FastAPI, served: Served) -> None:
    """Errors in one line: {"detail": ...} from attnkit's own endpoints, OpenAI's shape from /v1."""
    pipeline = served.pipeline

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        message = validation_message(error, _forms(request, pipeline))
        if request.url.path.startswith(OPENAI):
            param = next((str(e["loc"][-1]) for e in error.errors() if len(e["loc"]) > 1), None)
            return error_response(400, message, param)
        return JSONResponse({"detail": message}, status_code=422)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return error_response(400, error.message, error.param)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        path, detail = request.url.path, str(error.detail)
        if error.status_code == 404 and path in KNOWN:
            serves = ", ".join(posts_served(pipeline) + openai_paths(pipeline)) or "no POST endpoint"
            detail = f"{path}: this model ({pipeline.task.describe()}) does not serve it; it serves {serves}"
        if path.startswith(OPENAI):
            return error_response(error.status_code, detail, headers=getattr(error, "headers", None))
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=getattr(error, "headers", None))


def _forms(request: Request, pipeline: Pipeline) -> str | None:
    """What a request to this path of attnkit's takes, for a 422 on a field it does not: the task's input fields."""
    from attnkit.apps.requests import inputs_model

    if request.url.path not in ("/predict", "/generate", "/generate_stream"):
        return None
    task = pipeline.task
    return inputs_model(task.input_fields, task.input_name).forms().replace("give either", "this model takes")


def _guard(app: FastAPI, limits: Limits, api_key: str | None) -> None:
    """The body limit, and with `api_key` the key check (added last, so it runs first: nothing is read for a request
    without the key)."""

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # noqa: ANN001, ANN202
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            message = f"request body over {limits.max_body_bytes:,} bytes"
            if request.url.path.startswith(OPENAI):
                return error_response(413, message)
            return JSONResponse({"detail": message}, status_code=413)
        return await call_next(request)

    if not api_key:
        return
    wanted = f"Bearer {api_key}".encode()

    @app.middleware("http")
    async def authorize(request: Request, call_next):  # noqa: ANN001, ANN202
        given = request.headers.get("authorization", "").encode()
        if open_without_key(request.url.path) or hmac.compare_digest(given, wanted):  # constant time
            return await call_next(request)
        detail = "this server wants its API key: send the header Authorization: Bearer <key>"
        headers = {"WWW-Authenticate": "Bearer"}
        if request.url.path.startswith(OPENAI):
            return error_response(401, detail, code=KEY_CODE, headers=headers)
        return JSONResponse({"detail": detail}, status_code=401, headers=headers)


def serve(
    path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    limits: Limits | None = None,
    int8: bool = False,
    engine: str = "auto",
    api_key: str | None = None,
) -> None:
    """Load the model at `path` (`int8`: its linear layers in int8, on the CPU; `engine`: see Pipeline.load) and
    serve it until interrupted (Ctrl-C or SIGTERM finish the requests in flight); `api_key`: see create_app."""
    import uvicorn

    limits = limits or Limits()
    check_address(host, port)  # before the model loads, which may take a while
    if not api_key and not is_loopback(host):
        print(f"attnkit: warning: {host} lets other machines in and no --api-key is set: anyone who reaches "
              f"port {port} can use the model", file=sys.stderr, flush=True)  # fmt: skip
    pipeline = Pipeline.load(path, device=device, int8=int8, engine=engine)
    app = create_app(pipeline, limits, str(path), api_key)
    print(startup_line(pipeline, str(path), host, port), file=sys.stderr, flush=True)
    # uvicorn closes an idle connection after 5 s by default, the same moment an httpx client's pool may reuse it:
    # that request then fails with a reset (12 of 163,614 in a 10-minute soak). 75 s, as nginx and gunicorn keep.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=30,
        timeout_keep_alive=75,
        limit_concurrency=limits.max_connections,
        http=deadline_protocol(limits.request_timeout_s),
    )
    server = uvicorn.Server(config)
    # Server.run, not uvicorn.run, which swallows the KeyboardInterrupt of a Ctrl-C: after the requests in flight,
    # uvicorn raises the signal it caught again, so the process ends with its status (SIGINT: attnkit's one line
    # and 130; SIGTERM: 143), as a supervisor expects
    server.run()
    if not server.started:
        raise AttnkitError(f"{host}:{port}: the server did not start (uvicorn's reason is above)")


OPEN_PATHS = ("/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def open_without_key(path: str) -> bool:
    """/health, and what holds nothing of the model's: the pages (/, /docs, /redoc and their scripts), which a
    browser opens without a header, and the API's schema they read (which then leaves out the model's path)."""
    return path in OPEN_PATHS or path.startswith(DOCS_ASSETS)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.1, ::1, localhost)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only "localhost" is known to stay on this machine
        return False


def deadline_protocol(seconds: float) -> type:
    """uvicorn's HTTP/1.1 protocol, where a request must arrive whole (headers and body) within `seconds` of its
    first byte, or of the connection if it sends none: a slower client (one byte a second) is disconnected rather
    than holding a connection forever. uvicorn itself only times out idle keep-alive connections, and every byte
    restarts that clock."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineProtocol(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.deadline is None:  # the first byte of the next request on this connection
                self._arm()
            super().data_received(data)
            if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # the request is whole (or the end)
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self.deadline = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _too_slow(self) -> None:
            self.deadline = None
            if not self.transport.is_closing():
                self.logger.warning("a client took over %g s to send its request: disconnected", seconds)
                self.transport.close()

    return DeadlineProtocol


def check_address(host: str, port: int) -> None:
    """Refuses a host and port the server could not listen on, binding them as uvicorn does (SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise AttnkitError(f"{host}:{port} is in use (another server?); pick another --port") from None
            raise AttnkitError(f"{host}:{port}: cannot listen there ({error.strerror or error})") from None
        except OverflowError:
            raise AttnkitError(f"--port {port}: expected 0 to 65535") from None

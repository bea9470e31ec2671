"""`attnkit serve DIR`: a trained model (or a published checkpoint, for /encode) behind HTTP, with FastAPI.

Concurrent requests are gathered into batches: a batch takes every request that came while the model ran the
previous one (as Triton's dynamic batcher does by default), waits up to `max_wait_ms` for more (default 0), and
closes at `max_batch` texts; it runs in a worker thread (the event loop keeps accepting requests), and each request
gets its own outputs back, in its order. Batching off is `max_batch=1`. A sampled /generate request with a `seed`
runs in a batch of its own, so that the same request draws the same output.

Endpoints, as the model's task serves them (Task.verbs): POST /predict, /generate with {"text": ...} or
{"texts": [...]} (a pair model: {"text_a": ..., "text_b": ...} or {"pairs": [{"text_a": ..., "text_b": ...}]}, the
fields its task names) answer {"prediction": ...} or {"predictions": [...]}; POST /generate_stream streams one output
as server-sent events; POST /encode answers {"embedding": [...]} or {"embeddings": [[...], ...]}; GET /health, /info;
GET /attention?text=...[&target=...], the page of `attnkit attention`; GET / a page to try the model (try_page.html:
its inputs, its answer and its attention, from these endpoints); the API at /docs and /redoc, offline. A blank input
gives null from /predict and /generate, and the vector of the empty input from /encode; no inputs give an empty list.

Bad input is a 4xx with {"detail": "<one line>"} that names the field, never a 500: 413 for a body or a text over
the limits, 422 for invalid JSON, a missing, mistyped or unknown field (`texts[1]: Input should be a valid string`),
400 for a request the model cannot serve. A text of more tokens than the model reads (`Pipeline.max_input_tokens`)
is cut as `attnkit predict` cuts it, a tagger reading a long sentence in windows (`too_long="truncate"`), or refused
with 413 before it is batched (`"reject"`). A batch that fails is run again one request at a time, so that only the
request at fault gets its error (400; 500, logged with its traceback, for an error of attnkit's own). On SIGTERM or
Ctrl-C, uvicorn finishes the requests in flight.

Who gets in: with an API key, every endpoint that runs or describes the model wants `Authorization: Bearer <key>`
(401); /health, the pages and the API's schema do not (open_without_key); a request gets 503 while
`max_connections` are open; a request that takes over `request_timeout_s` to arrive is disconnected.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and the request bodies are
# classes made for each model (its task's input fields), which string annotations could not name
import asyncio
import contextlib
import dataclasses
import errno
import functools
import hmac
import ipaddress
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from importlib.resources import files

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi_offline import FastAPIOffline

from attnkit.apps.attention_maps import attention
from attnkit.apps.attention_page import render_page
from attnkit.apps.limits import Limits
from attnkit.apps.requests import Encoding, GenerationOptions, Inputs, inputs_model, validation_message
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline

ENDPOINTS = {"predict": "/predict", "generate": "/generate", "encode": "/encode"}  # the verbs served by POST
DOCS_ASSETS = "/static-offline-docs/"  # where fastapi-offline serves Swagger UI's and ReDoc's scripts


def posts_served(pipeline: Pipeline) -> list[str]:
    """The POST endpoints a model serves: those of its task's verbs (predict, generate, encode)."""
    return [path for verb, path in ENDPOINTS.items() if verb in pipeline.task.verbs]


def startup_line(pipeline: Pipeline, where: str, host: str, port: int) -> str:
    """The line `attnkit serve` prints before it starts: the model, what it is, where and which endpoints."""
    posts = posts_served(pipeline)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    posts += ["/generate_stream"] if "/generate" in posts else []
    gets = (
        ["/ (a page to try it)"] + (["/attention"] if "attention" in pipeline.task.verbs else []) + ["/info", "/docs"]
    )
    endpoints = (f"POST {', '.join(posts)}; " if posts else "") + f"GET {', '.join(gets)}"
    engine = "" if pipeline.engine == "torch" else f" run by {pipeline.engine}"
    return f"attnkit serve: {where} ({pipeline.task.describe()}){engine} on {url} - {endpoints}"


class Batcher:
    """Gathers the texts of concurrent requests into batches for `run` (texts -> one output per text)."""

    def __init__(self, run: Callable[[list[str]], list], limits: Limits, lock: threading.Lock) -> None:
        self.run, self.limits, self.lock = run, limits, lock
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, texts: list[str]) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self.queue.get()]
            size, deadline = len(pending[0][0]), loop.time() + self.limits.max_wait_ms / 1000
            while size < self.limits.max_batch:
                if not self.queue.empty():  # what came while the model was busy joins at once
                    pending.append(self.queue.get_nowait())
                elif (left := deadline - loop.time()) > 0:
                    try:
                        pending.append(await asyncio.wait_for(self.queue.get(), left))
                    except TimeoutError:
                        break
                else:
                    break
                size += len(pending[-1][0])
            await self._answer(pending)

    async def _answer(self, pending: list[tuple[list[str], asyncio.Future]]) -> None:
        """Runs the requests' texts as one batch; if it fails, each request alone, so that only the one at fault
        gets its error and the others their outputs."""
        texts = [text for request, _ in pending for text in request]
        try:
            outputs = await asyncio.to_thread(locked, self.lock, self.run, texts)
        except Exception as error:
            if len(pending) > 1:
                for each in pending:
                    if not each[1].done():  # a client that went away leaves a cancelled future
                        await self._answer([each])
            elif not pending[0][1].done():
                pending[0][1].set_exception(error)
            return
        start = 0
        for request, future in pending:
            if not future.done():
                future.set_result(outputs[start : start + len(request)])
            start += len(request)


def locked(lock: threading.Lock, run: Callable[[list], list], inputs: list) -> list:
    """`run(inputs)` alone on the model: one batch at a time, whichever endpoint it came from."""
    with lock:
        return run(inputs)


def create_app(
    pipeline: Pipeline, limits: Limits | None = None, where: str = "", api_key: str | None = None
) -> FastAPI:
    """The FastAPI application serving `pipeline` (its model already on its device), within `limits` (default:
    Limits()); with `api_key`, every endpoint but open_without_key's wants `Authorization: Bearer <api_key>`."""
    limits = limits or Limits()
    lock = threading.Lock()
    batchers: dict[tuple, Batcher] = {}

    def batcher(key: tuple, run: Callable[[list[str]], list]) -> Batcher:
        if key not in batchers:
            batchers[key] = Batcher(run, limits, lock)
        return batchers[key]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for each in batchers.values():  # uvicorn has finished the requests in flight
            each.worker.cancel()

    # Swagger UI at /docs and ReDoc at /redoc from fastapi-offline's copies: FastAPI's own pages load them from a CDN,
    # blank without internet
    described = "attnkit" if api_key else f"attnkit serving {where}"  # the schema is open to all
    app = FastAPIOffline(title="attnkit", description=described, lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(error)}, status_code=422)

    page = files("attnkit.apps").joinpath("try_page.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def root() -> HTMLResponse:
        """The page to try the model: its inputs, its answer and its attention, from the endpoints below."""
        return HTMLResponse(page)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return JSONResponse({"detail": f"request body over {limits.max_body_bytes:,} bytes"}, status_code=413)
        return await call_next(request)

    if api_key:
        wanted = f"Bearer {api_key}".encode()

        @app.middleware("http")  # added last, so it runs first: nothing is read for a request without the key
        async def authorize(request: Request, call_next):
            given = request.headers.get("authorization", "").encode()
            if open_without_key(request.url.path) or hmac.compare_digest(given, wanted):  # constant time
                return await call_next(request)
            detail = "this server wants its API key: send the header Authorization: Bearer <key>"
            return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    async def checked(body: Inputs, encoding: bool) -> list:
        """The request's inputs, each within the limits (413 naming the first one over), before any is batched."""
        inputs, names = body.all(), body.names()
        if len(inputs) > limits.max_texts:
            many = f"{len(inputs)} {body.PLURAL}, at most {limits.max_texts} in one request"
            raise HTTPException(413, f"{body.PLURAL}: {many}")
        for name, item in zip(names, inputs):
            pieces = [item] if isinstance(item, str) else item
            fields = [name] if isinstance(item, str) else [f"{name}.{f}".lstrip(".") for f in body.FIELDS]
            for field, text in zip(fields, pieces):
                if len(text) > limits.max_text_chars:
                    raise HTTPException(413, f"{field}: {len(text):,} characters, at most {limits.max_text_chars:,}")
        if limits.too_long == "reject" and pipeline.max_input_tokens is not None:
            overs = await asyncio.to_thread(pipeline.over_limit, inputs, encoding)
            for name, over in zip(names, overs):
                if over is not None:
                    message = f"{name or 'input'}: {over[0]:,} tokens, over this model's limit of {over[1]:,}"
                    raise HTTPException(413, message + " (--too-long truncate cuts instead)")
        return inputs

    async def answer(
        body: Inputs,
        key: tuple,
        run: Callable[[list], list],
        encoding: bool = False,
        name: str = "prediction",
        alone: bool = False,
    ) -> dict:
        """{name: output} for one input, {name + "s": [outputs]} for a list; `alone`: in a batch of its own (a
        seeded sample, whose draws would depend on the requests it shared a batch with)."""
        inputs = await checked(body, encoding)
        try:
            if alone:
                outputs = await asyncio.to_thread(locked, lock, run, inputs) if inputs else []
            else:
                outputs = await batcher(key, run).submit(inputs) if inputs else []
        except AttnkitError as error:
            raise HTTPException(400, str(error)) from None
        except Exception:  # a fault of attnkit's, not of the request: its traceback goes to the server's log
            logging.getLogger("uvicorn.error").exception("the model failed on a request")
            raise HTTPException(500, "the model failed on this request; the server's log has the error") from None
        return {name: outputs[0]} if body.single else {f"{name}s": outputs}

    task = pipeline.task
    served = posts_served(pipeline)
    Predicting = inputs_model(task.input_fields, task.input_name)
    Generation = inputs_model(task.input_fields, task.input_name, GenerationOptions)

    def needs(endpoint: str) -> None:
        """A 400 saying what this model serves, unless it serves `endpoint` (its task's verbs say)."""
        if endpoint not in served:
            serves = ", ".join(served) or "no POST endpoint"
            raise HTTPException(
                400, f"{endpoint}: this model ({task.describe()}) does not serve it; it serves {serves}"
            )

    @app.post("/predict", summary="a prediction per input: a label, a tag per word, a number")
    async def predict(body: Predicting) -> dict:
        needs("/predict")
        return await answer(body, ("predict",), pipeline.predict)

    @app.post("/generate", summary="an output per input (seq2seq) or a continuation per prompt (a language model)")
    async def generate(body: Generation) -> dict:
        needs("/generate")
        new, sampling = body.new_tokens, body.sampling()
        run = functools.partial(pipeline.generate, max_new_tokens=new, beam_size=body.beam_size, sampling=sampling)
        key = ("generate", body.beam_size, new, body.temperature, body.top_k, body.top_p)
        return await answer(body, key, run, alone=body.seed is not None)

    @app.post(
        "/generate_stream",
        summary='one output, as server-sent events: {"piece": ...} as it is decoded (beam search: the whole output '
        'at its end), then {"done": true, "output": ...}; an error after the start: {"error": ...}',
    )
    async def generate_stream(body: Generation) -> StreamingResponse:
        needs("/generate")
        if not body.single:
            raise HTTPException(400, f"/generate_stream: one input per request ({body.forms().split(' or ')[0]})")
        inputs = await checked(body, encoding=False)
        loop, pieces = asyncio.get_running_loop(), asyncio.Queue()

        def run(_: list) -> list:
            def stream(_: int, piece: str) -> None:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

            try:
                return pipeline.generate(
                    inputs, max_new_tokens=body.new_tokens, beam_size=body.beam_size, sampling=body.sampling(),
                    stream=stream,
                )  # fmt: skip
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, None)  # after the last piece

        async def events():
            job = asyncio.ensure_future(asyncio.to_thread(locked, lock, run, inputs))
            while (piece := await pieces.get()) is not None:
                yield f"data: {json.dumps({'piece': piece}, ensure_ascii=False)}\n\n"
            try:
                (output,) = await job
            except AttnkitError as error:
                yield f"data: {json.dumps({'error': str(error)}, ensure_ascii=False)}\n\n"
                return
            except Exception:  # as /generate: the traceback goes to the server's log
                logging.getLogger("uvicorn.error").exception("the model failed on a request")
                yield f"data: {json.dumps({'error': 'the model failed on this request'})}\n\n"
                return
            yield f"data: {json.dumps({'done': True, 'output': output}, ensure_ascii=False)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/encode", summary="a vector per text: the mean of the encoder's last-layer states")
    async def encode(body: Encoding) -> dict:
        needs("/encode")
        embed = functools.partial(pipeline.embed, normalize=body.normalize)
        return await answer(body, ("encode", body.normalize), embed, encoding=True, name="embedding")

    @app.get("/attention", response_class=HTMLResponse, summary="the attention page of `attnkit attention`")
    async def attention_page(text: str, target: str | None = None) -> HTMLResponse:
        if "attention" not in task.verbs:
            raise HTTPException(400, f"/attention: this model ({task.describe()}) has no attention page")
        for name, value in (("text", text), ("target", target or "")):
            if len(value) > limits.max_text_chars:
                raise HTTPException(413, f"{name}: {len(value):,} characters, at most {limits.max_text_chars:,}")

        def draw(_: list) -> str:
            return render_page(attention(pipeline, text, target, where).to_json())

        try:
            return HTMLResponse(await asyncio.to_thread(locked, lock, draw, []))
        except AttnkitError as error:
            raise HTTPException(400, str(error)) from None

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        config = pipeline.model.config
        return {
            "model": where,
            "task": task.name,
            "labels": task.output_names,
            "architecture": dataclasses.asdict(config),
            "device": str(next(pipeline.model.parameters()).device),
            "engine": pipeline.engine,
            "max_input_tokens": pipeline.max_input_tokens,
            "limits": dataclasses.asdict(limits),
            "inputs": list(task.input_fields),
            "endpoints": served + (["/generate_stream"] if "/generate" in served else []),
            "attention": "attention" in task.verbs,
        }

    return app


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

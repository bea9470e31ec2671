"""`attnkit serve DIR`: a trained model (or a published checkpoint, for /encode) behind HTTP, with FastAPI.

Concurrent requests are gathered into batches: a batch takes every request that came while the model ran the
previous one (as Triton's dynamic batcher does by default), waits up to `max_wait_ms` for more (default 0), and
closes at `max_batch` texts; it runs in a worker thread (the event loop keeps accepting requests), and each request
gets its own outputs back, in its order. Batching off is `max_batch=1`. A sampled /generate request with a `seed`
runs in a batch of its own, so that the same request draws the same output.

Endpoints: POST /predict, /generate with {"text": ...} or {"texts": [...]} answer {"prediction": ...} or
{"predictions": [...]}; POST /encode answers {"embedding": [...]} or {"embeddings": [[...], ...]}; GET /health,
/info; GET /attention?text=...[&target=...], the page of `attnkit attention`; the OpenAPI page at /docs (where GET /
leads). A blank text gives null from /predict and /generate, and the vector of the empty input from /encode; no
texts give an empty list.

Bad input is a 4xx with {"detail": "<one line>"} that names the field, never a 500: 413 for a body or a text over
the limits, 422 for invalid JSON, a missing, mistyped or unknown field (`texts[1]: Input should be a valid string`),
400 for a request the model cannot serve. A text of more tokens than the model reads (`Pipeline.max_input_tokens`)
is cut as `attnkit predict` cuts it, a tagger reading a long sentence in windows (`too_long="truncate"`), or refused
with 413 before it is batched (`"reject"`). A batch that fails is run again one request at a time, so that only the
request at fault gets its error (400; 500, logged with its traceback, for an error of attnkit's own). On SIGTERM or
Ctrl-C, uvicorn finishes the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import logging
import math
import socket
import sys
import threading
from collections.abc import Callable
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from attnkit.attention import attention
from attnkit.attention_page import render_page
from attnkit.errors import AttnkitError
from attnkit.generate import Sampling
from attnkit.nn import Decoder, EncoderDecoder
from attnkit.pipeline import Pipeline, encoder_of
from attnkit.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class Limits:
    max_batch: int = 32  # texts in one batch (1: batching off)
    max_wait_ms: float = 0.0  # how long a batch waits for more requests; 0: it takes what came while the model ran
    max_body_bytes: int = 1 << 20  # a larger request body is refused (413)
    max_text_chars: int = 10_000  # a longer text is refused (413)
    max_texts: int = 256  # texts in one request
    too_long: Literal["truncate", "reject"] = "truncate"  # a text over the model's max_input_tokens: cut, or 413

    def __post_init__(self) -> None:
        for flag, value, note in (
            ("--max-batch", self.max_batch, " (1: batching off)"),
            ("--max-body-bytes", self.max_body_bytes, ""),
            ("--max-text-chars", self.max_text_chars, ""),
            ("max_texts", self.max_texts, ""),
        ):
            if value < 1:
                raise AttnkitError(f"{flag} must be at least 1{note}, got {value}")
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise AttnkitError(f"--max-wait-ms must be 0 or more (0: no wait), got {self.max_wait_ms:g}")
        if self.too_long not in ("truncate", "reject"):
            raise AttnkitError(f"too_long: {self.too_long!r}, expected 'truncate' or 'reject'")


class Texts(BaseModel):
    """One text or a list of them; an unknown field is refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    texts: list[str] | None = None

    @model_validator(mode="after")
    def one_of(self) -> Texts:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give either "text" (one string) or "texts" (a list of strings)')
        return self

    def all(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class Generation(Texts):
    beam_size: int | None = Field(None, ge=1, le=16, description="beams (1: greedy); default: the model's")
    max_length: int | None = Field(None, ge=1, le=1024, description="most new tokens; default: the model's, 64")
    temperature: float = Field(0.0, ge=0, le=100, description="above 0: sample (0: greedy or beam search)")
    top_k: int = Field(0, ge=0, description="sample among the k likeliest tokens (0: all)")
    top_p: float = Field(1.0, gt=0, le=1, description="sample among the likeliest tokens of this much mass")
    seed: int | None = Field(None, description="the same seed draws the same samples")

    @model_validator(mode="after")
    def sampling_settings(self) -> Generation:
        if self.temperature == 0 and (self.top_k or self.top_p != 1 or self.seed is not None):
            raise ValueError("top_k, top_p and seed shape sampling: give a temperature above 0")
        if self.temperature > 0 and (self.beam_size or 1) > 1:
            raise ValueError("beam search (beam_size > 1) and sampling (temperature > 0) exclude each other")
        return self

    def sampling(self) -> Sampling | None:
        return Sampling(self.temperature, self.top_k, self.top_p, self.seed) if self.temperature > 0 else None


class Encoding(Texts):
    normalize: bool = Field(False, description="scale each vector to length 1 (for cosine similarity)")


def validation_message(error: RequestValidationError) -> str:
    """A 422's one line: each problem as `field: problem`, the field named as the 413 messages name it (`text`,
    `texts[1]`, a query parameter by its name), `body` for the body as a whole; problems joined by "; "."""
    problems = []
    for each in error.errors():
        source, *path = each["loc"] or ("body",)
        if each["type"] == "json_invalid":
            reason = each.get("ctx", {}).get("error")
            problems.append(f"body: invalid JSON at character {path[0]}" + (f" ({reason})" if reason else ""))
            continue
        field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
        message = each["msg"].removeprefix("Value error, ") if each["type"] == "value_error" else each["msg"]
        problems.append(f"{field or source}: {message}")
    return "; ".join(problems)


def labels_of(task: Task | None) -> list[str] | None:
    """What a task's model outputs: a classifier's labels, a tagger's tags (None for other models)."""
    return next(iter(task.state().values()), None) if task else None


def posts_served(pipeline: Pipeline) -> list[str]:
    """The POST endpoints a model serves: /predict (classify, tag), /generate (a decoder: seq2seq, a language
    model), /encode (an encoder)."""
    name = pipeline.task.name if pipeline.task else None
    return [
        *(["/predict"] if name in ("classify", "tag") else []),
        *(["/generate"] if isinstance(pipeline.model, (Decoder, EncoderDecoder)) else []),
        *(["/encode"] if encoder_of(pipeline.model) is not None else []),
    ]


def startup_line(pipeline: Pipeline, where: str, host: str, port: int) -> str:
    """The line `attnkit serve` prints before it starts: the model, what it is, where and which endpoints."""
    task, labels = pipeline.task, labels_of(pipeline.task)
    if task is None:
        what = f"{pipeline.model.config.arch}, no task"
    elif labels:
        shown = ", ".join(labels[:8]) + (f", ... ({len(labels)} in all)" if len(labels) > 8 else "")
        what = f"{task.name}: {shown}"
    else:
        what = task.name
    posts = posts_served(pipeline)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    endpoints = (f"POST {', '.join(posts)}; " if posts else "") + "GET /attention, /info, /docs"
    return f"attnkit serve: {where} ({what}) on {url} - {endpoints}"


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
            outputs = await asyncio.to_thread(self._locked, texts)
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

    def _locked(self, texts: list[str]) -> list:
        with self.lock:  # one batch on the model at a time, whichever endpoint it came from
            return self.run(texts)


def create_app(pipeline: Pipeline, limits: Limits = Limits(), where: str = "") -> FastAPI:
    """The FastAPI application serving `pipeline` (its model already on its device)."""
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

    app = FastAPI(title="attnkit", description=f"attnkit serving {where}", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(error)}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + "/docs")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return JSONResponse({"detail": f"request body over {limits.max_body_bytes:,} bytes"}, status_code=413)
        return await call_next(request)

    async def checked(body: Texts, encoding: bool) -> list[str]:
        """The request's texts, each within the limits (413 naming the first one over), before any is batched."""
        texts = body.all()
        if len(texts) > limits.max_texts:
            raise HTTPException(413, f"texts: {len(texts)} texts, at most {limits.max_texts} in one request")
        names = ["text"] if body.text is not None else [f"texts[{i}]" for i in range(len(texts))]
        for name, text in zip(names, texts):
            if len(text) > limits.max_text_chars:
                raise HTTPException(413, f"{name}: {len(text):,} characters, at most {limits.max_text_chars:,}")
        most = pipeline.max_input_tokens
        if limits.too_long == "reject" and most is not None:
            counts = await asyncio.to_thread(pipeline.count_tokens, texts, encoding)
            for name, count in zip(names, counts):
                if count > most:
                    message = f"{name}: {count:,} tokens, over this model's limit of {most:,}"
                    raise HTTPException(413, message + " (--too-long truncate cuts instead)")
        return texts

    def locked(run: Callable[[list[str]], list], texts: list[str]) -> list:
        with lock:
            return run(texts)

    async def answer(
        body: Texts,
        key: tuple,
        run: Callable[[list[str]], list],
        encoding: bool = False,
        name: str = "prediction",
        alone: bool = False,
    ) -> dict:
        """{name: output} for one text, {name + "s": [outputs]} for a list; `alone`: in a batch of its own (a
        seeded sample, whose draws would depend on the requests it shared a batch with)."""
        texts = await checked(body, encoding)
        try:
            if alone:
                outputs = await asyncio.to_thread(locked, run, texts) if texts else []
            else:
                outputs = await batcher(key, run).submit(texts) if texts else []
        except AttnkitError as error:
            raise HTTPException(400, str(error)) from None
        except Exception:  # a fault of attnkit's, not of the request: its traceback goes to the server's log
            logging.getLogger("uvicorn.error").exception("the model failed on a request")
            raise HTTPException(500, "the model failed on this request; the server's log has the error") from None
        return {name: outputs[0]} if body.text is not None else {f"{name}s": outputs}

    served = posts_served(pipeline)

    def needs(endpoint: str) -> None:
        """A 400 saying why, unless this model serves `endpoint`."""
        if endpoint in served:
            return
        if endpoint == "/encode":
            raise HTTPException(400, "this model has no encoder (a decoder-only model cannot encode)")
        if endpoint == "/predict":
            task = pipeline.task
            what = "no task (a pretrained model: use /encode)" if task is None else f"a {task.name} model"
            raise HTTPException(400, f"/predict serves classify and tag models; this is {what}")
        raise HTTPException(400, "/generate serves models with a decoder; this one does not generate text")

    @app.post("/predict", summary="a label per text (classify) or a tag per word (tag)")
    async def predict(body: Texts) -> dict:
        needs("/predict")
        return await answer(body, ("predict",), pipeline.predict)

    @app.post("/generate", summary="an output per input (seq2seq) or a continuation per prompt (a language model)")
    async def generate(body: Generation) -> dict:
        needs("/generate")
        run = functools.partial(
            pipeline.generate, max_new_tokens=body.max_length, beam_size=body.beam_size, sampling=body.sampling()
        )
        key = ("generate", body.beam_size, body.max_length, body.temperature, body.top_k, body.top_p)
        return await answer(body, key, run, alone=body.seed is not None)

    @app.post("/encode", summary="a vector per text: the mean of the encoder's last-layer states")
    async def encode(body: Encoding) -> dict:
        needs("/encode")
        embed = functools.partial(pipeline.embed, normalize=body.normalize)
        return await answer(body, ("encode", body.normalize), embed, encoding=True, name="embedding")

    @app.get("/attention", response_class=HTMLResponse, summary="the attention page of `attnkit attention`")
    async def attention_page(text: str, target: str | None = None) -> HTMLResponse:
        for name, value in (("text", text), ("target", target or "")):
            if len(value) > limits.max_text_chars:
                raise HTTPException(413, f"{name}: {len(value):,} characters, at most {limits.max_text_chars:,}")

        def draw() -> str:
            with lock:
                return render_page(attention(pipeline, text, target, where).to_json())

        try:
            return HTMLResponse(await asyncio.to_thread(draw))
        except AttnkitError as error:
            raise HTTPException(400, str(error)) from None

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        task = pipeline.task
        config = pipeline.model.config
        return {
            "model": where,
            "task": task.name if task else None,
            "labels": labels_of(task),
            "architecture": dataclasses.asdict(config),
            "device": str(next(pipeline.model.parameters()).device),
            "max_input_tokens": pipeline.max_input_tokens,
            "limits": dataclasses.asdict(limits),
        }

    return app


def serve(
    path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    limits: Limits = Limits(),
    int8: bool = False,
) -> None:
    """Load the model at `path` (`int8`: its linear layers in int8, on the CPU) and serve it until interrupted
    (Ctrl-C or SIGTERM finish the requests in flight)."""
    import uvicorn

    check_address(host, port)  # before the model loads, which may take a while
    pipeline = Pipeline.load(path, device=device, int8=int8)
    app = create_app(pipeline, limits, str(path))
    print(startup_line(pipeline, str(path), host, port), file=sys.stderr, flush=True)
    # uvicorn closes an idle connection after 5 s by default, the same moment an httpx client's pool may reuse it:
    # that request then fails with a reset (12 of 163,614 in a 10-minute soak). 75 s, as nginx and gunicorn keep.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30, timeout_keep_alive=75)


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

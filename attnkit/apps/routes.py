"""attnkit's own endpoints, each registered only where the loaded model serves it (its task's verbs), so that the
schema and /docs list what the model does and nothing else:

POST /predict, /generate with {"text": ...} or {"texts": [...]} (a pair model: {"text_a": ..., "text_b": ...} or
{"pairs": [{"text_a": ..., "text_b": ...}]}, the fields its task names) answer {"prediction": ...} or
{"predictions": [...]}; POST /generate_stream streams one output as server-sent events; POST /encode answers
{"embedding": [...]} or {"embeddings": [[...], ...]}; GET /attention?text=...[&target=...], the page of `attnkit
attention`; GET /health and /info always. A blank input gives null from /predict and /generate, and the vector of
the empty input from /encode; no inputs give an empty list. A sampled /generate request with a `seed` runs in a
batch of its own, so that the same request draws the same output."""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and the request bodies are
# classes made for each model (its task's input fields), which string annotations could not name
import asyncio
import dataclasses
import functools
import json

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse

from attnkit.apps.attention_maps import attention
from attnkit.apps.attention_page import render_page
from attnkit.apps.batcher import LOG, Served
from attnkit.apps.requests import Encoding, GenerationOptions, inputs_model
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline

ENDPOINTS = {"predict": "/predict", "generate": "/generate", "encode": "/encode"}  # the verbs served by POST


def posts_served(pipeline: Pipeline) -> list[str]:
    """The POST endpoints of attnkit's own a model serves: those of its task's verbs, /generate_stream with
    /generate."""
    posts = [path for verb, path in ENDPOINTS.items() if verb in pipeline.task.verbs]
    return [more for path in posts for more in ([path, "/generate_stream"] if path == "/generate" else [path])]


def own_routes(served: Served) -> APIRouter:
    """The router of attnkit's own endpoints that `served`'s model serves."""
    router = APIRouter()
    verbs = served.pipeline.task.verbs
    for verb, add in (("predict", _predict), ("generate", _generate), ("encode", _encode), ("attention", _attention)):
        if verb in verbs:
            add(router, served)
    _describe(router, served)
    return router


def _predict(router: APIRouter, served: Served) -> None:
    task = served.pipeline.task
    Predicting = inputs_model(task.input_fields, task.input_name)

    @router.post("/predict", summary="a prediction per input: a label, a tag per word, a number")
    async def predict(body: Predicting) -> dict:
        return await served.answer(body, ("predict",), served.pipeline.predict)


def _generate(router: APIRouter, served: Served) -> None:
    task, pipeline = served.pipeline.task, served.pipeline
    Generation = inputs_model(task.input_fields, task.input_name, GenerationOptions)

    @router.post("/generate", summary="an output per input (seq2seq) or a continuation per prompt (a language model)")
    async def generate(body: Generation) -> dict:
        settings = body.settings()
        run = functools.partial(pipeline.generate, **settings)
        key = ("generate", *(str(value) for value in settings.values()))
        return await served.answer(body, key, run, alone=body.seed is not None)

    @router.post(
        "/generate_stream",
        summary='one output, as server-sent events: {"piece": ...} as it is decoded (beam search: the whole output '
        'at its end), then {"done": true, "output": ...}; an error after the start: {"error": ...}',
    )
    async def generate_stream(body: Generation) -> StreamingResponse:
        if not body.single:
            raise HTTPException(400, f"/generate_stream: one input per request ({body.forms().split(' or ')[0]})")
        inputs = await served.checked(body, encoding=False)
        return StreamingResponse(_events(served, inputs, body.settings()), media_type="text/event-stream")


async def _events(served: Served, inputs: list, settings: dict):  # noqa: ANN202 - an async generator of events
    """The server-sent events of one output streamed: its pieces, then the whole output (or an error)."""
    loop, pieces = asyncio.get_running_loop(), asyncio.Queue()

    def run(_: list) -> list:
        def stream(_: int, piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        try:
            return served.pipeline.generate(inputs, **settings, stream=stream)
        finally:
            loop.call_soon_threadsafe(pieces.put_nowait, None)  # after the last piece

    job = asyncio.ensure_future(served.alone(run, inputs))
    while (piece := await pieces.get()) is not None:
        yield f"data: {json.dumps({'piece': piece}, ensure_ascii=False)}\n\n"
    try:
        (output,) = await job
    except AttnkitError as error:
        yield f"data: {json.dumps({'error': str(error)}, ensure_ascii=False)}\n\n"
        return
    except Exception:  # as /generate: the traceback goes to the server's log
        LOG.exception("the model failed on a request")
        yield f"data: {json.dumps({'error': 'the model failed on this request'})}\n\n"
        return
    yield f"data: {json.dumps({'done': True, 'output': output}, ensure_ascii=False)}\n\n"


def _encode(router: APIRouter, served: Served) -> None:
    @router.post("/encode", summary="a vector per text: the mean of the model's last-layer states")
    async def encode(body: Encoding) -> dict:
        embed = functools.partial(served.pipeline.embed, normalize=body.normalize)
        return await served.answer(body, ("encode", body.normalize), embed, encoding=True, name="embedding")


def _attention(router: APIRouter, served: Served) -> None:
    @router.get("/attention", response_class=HTMLResponse, summary="the attention page of `attnkit attention`")
    async def attention_page(text: str, target: str | None = None) -> HTMLResponse:
        for name, value in (("text", text), ("target", target or "")):
            served.within(name, value)

        def draw(_: list) -> str:
            return render_page(attention(served.pipeline, text, target, served.where).to_json())

        try:
            return HTMLResponse(await served.alone(draw, []))
        except AttnkitError as error:
            raise HTTPException(400, str(error)) from None


def _describe(router: APIRouter, served: Served) -> None:
    pipeline = served.pipeline

    @router.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @router.get("/info")
    async def info() -> dict:
        task = pipeline.task
        return {
            "model": served.where,
            "task": task.name,
            "labels": task.output_names,
            "architecture": dataclasses.asdict(pipeline.model.config),
            "device": str(next(pipeline.model.parameters()).device),
            "engine": pipeline.engine,
            "max_input_tokens": pipeline.max_input_tokens,
            "limits": dataclasses.asdict(served.limits),
            "inputs": list(task.input_fields),
            "endpoints": posts_served(pipeline),
            "attention": "attention" in task.verbs,
            "similar": task.similar,
            "chat": pipeline.chats,
        }

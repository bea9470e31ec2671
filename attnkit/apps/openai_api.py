"""The OpenAI API in `attnkit serve`, for the clients that speak it (the openai package, LangChain, LlamaIndex, curl
scripts written for OpenAI): GET /v1/models; POST /v1/completions and /v1/chat/completions (a model that generates;
chat through its chat template), streamed as server-sent chunks ending with `data: [DONE]`; POST /v1/embeddings (a
model's mean last-layer state, of unit length, as floats or base64). Answers, usage counts and errors take OpenAI's
shapes ({"error": {"message", "type", "param", "code"}}, 400 for a request the model cannot serve).

A setting a request leaves out is the checkpoint's default (its generation_config.json, a GGUF's sampling settings),
else attnkit's: greedy decoding; at most 16 new tokens for a completion (OpenAI's default), 512 for a chat reply.
The `model` a request names is not checked: the server serves one model, under the name /v1/models gives it."""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations
import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from attnkit.apps.batcher import LOG, Served
from attnkit.errors import AttnkitError

COMPLETION_TOKENS, CHAT_TOKENS = 16, 512  # new tokens when a request names none
MOST_TOKENS, MOST_CHOICES = 4096, 16
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "not_found_error",
               413: "invalid_request_error", 503: "server_error"}  # fmt: skip
KEY_CODE = "invalid_api_key"


class Sampled(BaseModel):
    """What completions and chat completions share: how many tokens, how to draw them, where to stop."""

    model_config = ConfigDict(extra="ignore")  # user, metadata, logit_bias: OpenAI's clients send more than is used

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=MOST_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, description="not OpenAI's: sample among the k likeliest tokens")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="not OpenAI's: above 1, fewer repeats")
    n: int = Field(1, ge=1, le=MOST_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict | None = None
    frequency_penalty: float = Field(0.0, description="unsupported beyond 0: attnkit has repetition_penalty")
    presence_penalty: float = Field(0.0, description="unsupported beyond 0: attnkit has repetition_penalty")
    logprobs: bool | int | None = Field(None, description="unsupported")

    def settings(self, default_tokens: int) -> dict:
        """Pipeline.generate's settings for one choice (a seed moves on with each further choice)."""
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                raise RequestError(f"{name} is not supported (repetition_penalty is)", name)
        if self.logprobs:
            raise RequestError("logprobs are not supported", "logprobs")
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return {
            "max_new_tokens": self.max_tokens or default_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "repetition_penalty": self.repetition_penalty,
            "stop": tuple(stop),
        }

    @property
    def usage_in_stream(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(Sampled):
    prompt: str | list[str]
    echo: bool = False

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_call_id, ...

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None

    def text(self) -> str:
        """The message's text: its content, or the text parts of a list of parts (an image part is refused)."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"a content part of type {part.get('type')!r}: this model reads text", "messages")
            parts.append(part["text"])
        return "".join(parts)


class ChatRequest(Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MOST_TOKENS)
    tools: list | None = None

    def conversation(self) -> list[dict]:
        if self.tools:
            raise RequestError("tools are not supported", "tools")
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None

    @field_validator("input")
    @classmethod
    def some_text(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give one text or a list of texts")
        return value


class RequestError(Exception):
    """A request this model cannot serve (400), naming the parameter at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error: {"error": {"message", "type", "param", "code"}}."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def model_name(where: str) -> str:
    """The name the served model goes by: its folder's, or its GGUF file's without the suffix."""
    path = Path(where)
    return (path.stem if path.suffix.lower() == ".gguf" else path.name) or "attnkit"


def openai_routes(served: Served) -> APIRouter:
    """The /v1 routes that `served`'s model serves: models always; completions where it generates, chat where it
    chats, embeddings where it gives states."""
    router, pipeline = APIRouter(prefix="/v1", tags=["OpenAI API"]), served.pipeline
    name, created = model_name(served.where), int(time.time())

    @router.get("/models", summary="the model this server serves")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "attnkit"}]}

    if "generate" in pipeline.task.verbs:
        _completions(router, served, name)
    if pipeline.chats:
        _chat(router, served, name)
    if "encode" in pipeline.task.verbs:
        _embeddings(router, served, name)
    return router


class Choice:
    """One generated choice: its text, its tokens and why it ended."""

    def __init__(self, text: str = "", tokens: int = 0, finish: str = "stop") -> None:
        self.text, self.tokens, self.finish = text, tokens, finish


def _generation(
    served: Served, prompts: list[str], settings: dict, templated: bool, stream: Callable | None = None
) -> Callable[[list], list[Choice]]:
    """What generates each prompt's choice, run under the model's lock (`stream(i, piece)` receives the pieces of
    choice i as they come)."""
    choices = [Choice() for _ in prompts]

    def report(i: int, tokens: int, finish: str) -> None:
        choices[i].tokens, choices[i].finish = tokens, finish

    def run(_: list) -> list:
        texts = []
        for i, prompt in enumerate(prompts):  # one at a time: each choice draws on from its own seed
            seed = settings["seed"] if settings["seed"] is None else settings["seed"] + i
            each = (lambda _, piece, i=i: stream(i, piece)) if stream else None
            texts += served.pipeline.generate(
                [prompt], **{**settings, "seed": seed}, templated=templated, stream=each,
                report=lambda _, tokens, finish, i=i: report(i, tokens, finish),
            )  # fmt: skip
        for choice, text in zip(choices, texts):
            choice.text = text or ""
        return choices

    return run


def _count(served: Served, prompt: str, templated: bool) -> int:
    """The tokens the model reads of a prompt (a chat template's rendering: as it is)."""
    tokenizer = served.pipeline.tokenizer
    return len(tokenizer.encode(prompt)) + (0 if templated else len(tokenizer.prompt_start))


def _completions(router: APIRouter, served: Served, name: str) -> None:
    @router.post("/completions", summary="a continuation of each prompt")
    async def completions(body: CompletionRequest):  # noqa: ANN202 - a JSON answer or a stream of events
        for i, prompt in enumerate(body.prompts):
            served.within(f"prompt[{i}]", prompt)
        settings = body.settings(COMPLETION_TOKENS)
        prompts = [prompt for prompt in body.prompts for _ in range(body.n)]
        tokens = sum(_count(served, prompt, False) for prompt in body.prompts)
        shape = Shape("cmpl", "text_completion", name, chat=False, echo=[p if body.echo else "" for p in prompts])
        if body.stream:
            return _streamed(served, prompts, settings, False, shape, tokens, body.usage_in_stream)
        choices = await _run(served, _generation(served, prompts, settings, False), prompts)
        return shape.answer(choices, tokens)


def _chat(router: APIRouter, served: Served, name: str) -> None:
    @router.post("/chat/completions", summary="the model's reply to a conversation, through its chat template")
    async def chat(body: ChatRequest):  # noqa: ANN202 - a JSON answer or a stream of events
        try:
            conversation = body.conversation()
            for i, message in enumerate(conversation):
                served.within(f"messages[{i}].content", message["content"])
            prompt = served.pipeline.chat_prompt(conversation)
        except AttnkitError as error:
            raise RequestError(str(error), "messages") from None
        settings = body.settings(CHAT_TOKENS)
        settings["max_new_tokens"] = body.max_completion_tokens or settings["max_new_tokens"]
        prompts, tokens = [prompt] * body.n, _count(served, prompt, True)
        shape = Shape("chatcmpl", "chat.completion", name, chat=True)
        if body.stream:
            return _streamed(served, prompts, settings, True, shape, tokens, body.usage_in_stream)
        choices = await _run(served, _generation(served, prompts, settings, True), prompts)
        return shape.answer(choices, tokens)


async def _run(served: Served, run: Callable[[list], list], prompts: list[str]) -> list[Choice]:
    try:
        return await served.alone(run, prompts)
    except AttnkitError as error:
        raise RequestError(str(error)) from None
    except Exception:
        LOG.exception("the model failed on a request")
        raise HTTPException(500, "the model failed on this request; the server's log has the error") from None


class Shape:
    """How an answer of one endpoint is written: its id, object names and choices' form."""

    def __init__(self, prefix: str, kind: str, model: str, chat: bool, echo: list[str] | None = None) -> None:
        self.id, self.kind, self.model, self.chat = f"{prefix}-{uuid.uuid4().hex}", kind, model, chat
        self.echo, self.created = echo, int(time.time())

    def head(self) -> dict:
        return {"id": self.id, "object": self.kind, "created": self.created, "model": self.model}

    def answer(self, choices: list[Choice], prompt_tokens: int) -> dict:
        made = sum(choice.tokens for choice in choices)
        return {
            **self.head(),
            "choices": [self.choice(i, choice) for i, choice in enumerate(choices)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": made, "total_tokens": prompt_tokens + made},
        }

    def choice(self, i: int, choice: Choice) -> dict:
        if self.chat:
            message = {"role": "assistant", "content": choice.text}
            return {"index": i, "message": message, "logprobs": None, "finish_reason": choice.finish}
        text = (self.echo[i] if self.echo else "") + choice.text
        return {"index": i, "text": text, "logprobs": None, "finish_reason": choice.finish}

    def chunk(self, i: int, piece: str | None, finish: str | None = None) -> str:
        """One server-sent event: a piece of choice i (None: its opening, for chat its role), or its end."""
        if self.chat:
            delta = {"role": "assistant", "content": ""} if piece is None else {} if finish else {"content": piece}
            part = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            part = {"index": i, "text": piece or "", "logprobs": None, "finish_reason": finish}
        kind = "chat.completion.chunk" if self.chat else self.kind
        return _event({**self.head(), "object": kind, "choices": [part]})


def _event(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _streamed(
    served: Served, prompts: list[str], settings: dict, templated: bool, shape: Shape, tokens: int, usage: bool
) -> StreamingResponse:
    """The choices as server-sent chunks, as they are decoded, then `data: [DONE]`."""

    async def events():  # noqa: ANN202 - an async generator of events
        loop, pieces = asyncio.get_running_loop(), asyncio.Queue()

        def stream(i: int, piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, (i, piece))

        run = _generation(served, prompts, settings, templated, stream)

        def whole(inputs: list) -> list:
            try:
                return run(inputs)
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, None)

        job = asyncio.ensure_future(served.alone(whole, prompts))
        opened = set()
        while (item := await pieces.get()) is not None:
            i, piece = item
            if i not in opened:
                opened.add(i)
                yield shape.chunk(i, None) if shape.chat else shape.chunk(i, shape.echo[i] if shape.echo else "")
            yield shape.chunk(i, piece)
        try:
            choices = await job
        except Exception as error:
            if not isinstance(error, AttnkitError):
                LOG.exception("the model failed on a request")
            message = str(error) if isinstance(error, AttnkitError) else "the model failed on this request"
            yield _event(error_body(400 if isinstance(error, AttnkitError) else 500, message))
            yield _event("[DONE]")
            return
        for i, choice in enumerate(choices):
            if i not in opened:
                yield shape.chunk(i, None)
            yield shape.chunk(i, None, choice.finish)
        if usage:
            made = sum(choice.tokens for choice in choices)
            counts = {"prompt_tokens": tokens, "completion_tokens": made, "total_tokens": tokens + made}
            yield _event({**shape.head(), "object": "chat.completion.chunk" if shape.chat else shape.kind,
                          "choices": [], "usage": counts})  # fmt: skip
        yield _event("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


def _embeddings(router: APIRouter, served: Served, name: str) -> None:
    @router.post("/embeddings", summary="a vector per text: the model's mean last-layer state, of unit length")
    async def embeddings(body: EmbeddingRequest) -> dict:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) > served.limits.max_texts:
            raise HTTPException(413, f"input: {len(texts)} texts, at most {served.limits.max_texts} in one request")
        for i, text in enumerate(texts):
            served.within(f"input[{i}]", text)
        vectors = await served.outputs(texts, ("embeddings",), lambda t: served.pipeline.embed(t, normalize=True))
        if body.dimensions is not None and vectors and body.dimensions != len(vectors[0]):
            raise RequestError(f"dimensions: this model's vectors have {len(vectors[0])}", "dimensions")
        counted = sum(served.pipeline.count_tokens(texts, encoding=True))
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
            for i, vector in enumerate(vectors)
        ]
        return {"object": "list", "data": data, "model": name,
                "usage": {"prompt_tokens": counted, "total_tokens": counted}}  # fmt: skip


def _encoded(vector: list[float], form: str) -> list[float] | str:
    """A vector as floats, or as OpenAI's base64 of little-endian float32."""
    if form == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")

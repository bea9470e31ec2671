"""The model as the server's routes share it: one lock (one batch at a time on the model, whichever route it came
from), the batchers that gather concurrent requests, and the checks every request passes before it is batched.

Concurrent requests are gathered into batches: a batch takes every request that came while the model ran the
previous one (as Triton's dynamic batcher does by default), waits up to `max_wait_ms` for more (default 0), and
closes at `max_batch` inputs; it runs in a worker thread (the event loop keeps accepting requests), and each request
gets its own outputs back, in its order. Batching off is `max_batch=1`. A batch that fails is run again one request
at a time, so that only the request at fault gets its error."""

# no `from __future__ import annotations`: FastAPI reads the annotations of what the routes call
import asyncio
import logging
import threading
from collections.abc import Callable

from fastapi import HTTPException

from attnkit.apps.limits import Limits
from attnkit.apps.requests import Inputs
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline

LOG = logging.getLogger("uvicorn.error")


class Batcher:
    """Gathers the inputs of concurrent requests into batches for `run` (inputs -> one output per input)."""

    def __init__(self, run: Callable[[list], list], limits: Limits, lock: threading.Lock) -> None:
        self.run, self.limits, self.lock = run, limits, lock
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, inputs: list) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((inputs, future))
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

    async def _answer(self, pending: list[tuple[list, asyncio.Future]]) -> None:
        """Runs the requests' inputs as one batch; if it fails, each request alone, so that only the one at fault
        gets its error and the others their outputs."""
        inputs = [each for request, _ in pending for each in request]
        try:
            outputs = await asyncio.to_thread(locked, self.lock, self.run, inputs)
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


class Served:
    """A pipeline behind the server: its lock, its batchers (one per kind of request and its settings), its limits."""

    def __init__(self, pipeline: Pipeline, limits: Limits, where: str) -> None:
        self.pipeline, self.limits, self.where = pipeline, limits, where
        self.lock = threading.Lock()
        self.batchers: dict[tuple, Batcher] = {}

    def batcher(self, key: tuple, run: Callable[[list], list]) -> Batcher:
        if key not in self.batchers:
            self.batchers[key] = Batcher(run, self.limits, self.lock)
        return self.batchers[key]

    def close(self) -> None:
        """Stop the batchers' workers (once the server has finished the requests in flight)."""
        for each in self.batchers.values():
            each.worker.cancel()

    async def alone(self, run: Callable[[list], list], inputs: list) -> list:
        """`run(inputs)` in a batch of its own, in a worker thread, under the model's lock."""
        return await asyncio.to_thread(locked, self.lock, run, inputs)

    async def checked(self, body: Inputs, encoding: bool) -> list:
        """The request's inputs, each within the limits (413 naming the first one over), before any is batched."""
        limits, inputs, names = self.limits, body.all(), body.names()
        if len(inputs) > limits.max_texts:
            many = f"{len(inputs)} {body.PLURAL}, at most {limits.max_texts} in one request"
            raise HTTPException(413, f"{body.PLURAL}: {many}")
        for name, item in zip(names, inputs):
            pieces = [item] if isinstance(item, str) else item
            fields = [name] if isinstance(item, str) else [f"{name}.{f}".lstrip(".") for f in body.FIELDS]
            for field, text in zip(fields, pieces):
                self.within(field, text)
        if limits.too_long == "reject" and self.pipeline.max_input_tokens is not None:
            overs = await asyncio.to_thread(self.pipeline.over_limit, inputs, encoding)
            for name, over in zip(names, overs):
                if over is not None:
                    message = f"{name or 'input'}: {over[0]:,} tokens, over this model's limit of {over[1]:,}"
                    raise HTTPException(413, message + " (--too-long truncate cuts instead)")
        return inputs

    def within(self, field: str, text: str) -> None:
        """413 naming `field` if its text is longer than the limit."""
        if len(text) > self.limits.max_text_chars:
            raise HTTPException(413, f"{field}: {len(text):,} characters, at most {self.limits.max_text_chars:,}")

    async def answer(
        self,
        body: Inputs,
        key: tuple,
        run: Callable[[list], list],
        encoding: bool = False,
        name: str = "prediction",
        alone: bool = False,
    ) -> dict:
        """{name: output} for one input, {name + "s": [outputs]} for a list; `alone`: in a batch of its own (a
        seeded sample, whose draws would depend on the requests it shared a batch with)."""
        inputs = await self.checked(body, encoding)
        outputs = await self.outputs(inputs, key, run, alone)
        return {name: outputs[0]} if body.single else {f"{name}s": outputs}

    async def outputs(self, inputs: list, key: tuple, run: Callable[[list], list], alone: bool = False) -> list:
        """`run`'s outputs for `inputs`, batched with other requests of the same `key` (unless `alone`): a request
        the model cannot serve is a 400, a fault of attnkit's a 500 whose traceback goes to the server's log."""
        try:
            if not inputs:
                return []
            return await (self.alone(run, inputs) if alone else self.batcher(key, run).submit(inputs))
        except AttnkitError as error:
            raise HTTPException(400, str(error)) from None
        except Exception:
            LOG.exception("the model failed on a request")
            raise HTTPException(500, "the model failed on this request; the server's log has the error") from None

"""The one interface every serving engine implements, and the micro-batching job queue.

A request becomes a :class:`Job` (prompt token ids + sampling parameters + which sub-model).
The web layer submits jobs and awaits them (or iterates their stream); an engine runs them in
its own worker thread, in micro-batches: the worker takes the first waiting job, waits up to
``max_wait_ms`` for more (up to ``max_batch_size``), and runs them together, so concurrent
requests for *different* adapters share one forward pass. Results travel back to the asyncio
loop with ``call_soon_threadsafe``.

Engines: :mod:`.transformers_peft` (default), :mod:`.llamacpp`, :mod:`.vllm`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from zimo.serve.config import BackendConfig, SubModel

log = logging.getLogger("zimo.serve")


class BackendError(Exception):
    """A model-side problem that the web layer turns into an OpenAI error (status, message)."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class QueueFull(BackendError):
    def __init__(self, depth: int):
        super().__init__(
            429, f"the server is busy ({depth} requests queued); retry shortly", "overloaded"
        )


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    json_mode: bool = False
    seed: int | None = None
    ignore_eos: bool = False
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Result:
    """What one job produced."""

    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None
    compute_s: float = 0.0  # this job's share of the engine's busy time
    queue_s: float = 0.0
    label_probs: dict[str, float] | None = None
    batch_size: int = 1


@dataclass
class Delta:
    text: str
    logprobs: list[TokenLogprob] | None = None


_DONE = object()


class Job:
    """One request inside an engine. ``kind`` is ``generate`` or ``label``."""

    def __init__(
        self,
        model: str,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        kind: str = "generate",
        labels: list[str] | None = None,
        stream: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        self.model = model
        self.prompt_ids = prompt_ids
        self.params = params
        self.kind = kind
        self.labels = labels or []
        self.stream = stream
        self.loop = loop or asyncio.get_running_loop()
        self.future: asyncio.Future[Result] = self.loop.create_future()
        self.deltas: asyncio.Queue[Any] | None = asyncio.Queue() if stream else None
        self.cancelled = threading.Event()
        self.submitted = time.perf_counter()
        self.started: float | None = None
        # Worker-side bookkeeping, so a failed batch knows which jobs it can run again:
        # a job already answered is left alone, one that streamed text cannot restart.
        self.settled = False
        self.emitted = False

    # --- called from the worker thread
    def emit(self, text: str, logprobs: list[TokenLogprob] | None = None) -> None:
        if self.deltas is not None and (text or logprobs):
            self.emitted = True
            self.loop.call_soon_threadsafe(self.deltas.put_nowait, Delta(text, logprobs))

    def finish(self, result: Result) -> None:
        self.settled = True

        def _set() -> None:
            if not self.future.done():
                self.future.set_result(result)
            if self.deltas is not None:
                self.deltas.put_nowait(_DONE)

        self.loop.call_soon_threadsafe(_set)

    def fail(self, exc: BaseException) -> None:
        self.settled = True

        def _set() -> None:
            if not self.future.done():
                self.future.set_exception(exc)
            if self.deltas is not None:
                self.deltas.put_nowait(_DONE)

        self.loop.call_soon_threadsafe(_set)

    # --- called from the event loop
    def cancel(self) -> None:
        """The client went away: the worker drops the job at its next step."""
        self.cancelled.set()

    async def iter_deltas(self) -> AsyncIterator[Delta]:
        assert self.deltas is not None, "iter_deltas needs stream=True"
        while True:
            item = await self.deltas.get()
            if item is _DONE:
                return
            yield item


class Backend(ABC):
    """A serving engine: owns the base model, its sub-models and a worker thread."""

    kind = "abstract"

    def __init__(self, config: BackendConfig):
        self.config = config
        self.models: dict[str, SubModel] = {}
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.busy_s = 0.0  # total engine time, for metrics
        self.batches = 0
        self.batch_rows = 0
        self.max_batch_seen = 0
        self.mixed_batches = 0  # batches that held more than one distinct sub-model

    # --- lifecycle
    def start(self) -> None:
        """Load the base model and start the worker thread (idempotent)."""
        if self._thread is None:
            self.load()
            self._thread = threading.Thread(
                target=self._loop, name=f"zimo-{self.kind}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @abstractmethod
    def load(self) -> None:
        """Load the base model (called once, before the worker starts)."""

    # --- models
    def add_model(self, sub: SubModel) -> None:
        """Make ``sub`` servable (weights load lazily on first use)."""
        self.models[sub.name] = sub

    def remove_model(self, name: str) -> None:
        self.models.pop(name, None)

    def has_model(self, name: str) -> bool:
        return name in self.models

    # --- text
    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    @abstractmethod
    def encode_chat(self, model: str, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a chat prompt for ``model`` (chat template + its instruction)."""

    @abstractmethod
    def encode_text(self, model: str, text: str) -> list[int]:
        """Token ids of a raw completion prompt."""

    def label_text(self, messages: list[dict[str, str]]) -> str:
        """The text a label sub-model classifies: the last user message."""
        for m in reversed(messages):
            if m["role"] == "user":
                return m["content"]
        return messages[-1]["content"]

    # --- queue
    def submit(self, job: Job, max_queue: int = 10_000) -> Job:
        depth = self._jobs.qsize()
        if depth >= max_queue:
            raise QueueFull(depth)
        self._jobs.put(job)
        return job

    def queue_depth(self) -> int:
        return self._jobs.qsize()

    def _collect(self) -> list[Job] | None:
        first = self._jobs.get()
        if first is None:
            return None
        jobs = [first]
        bc = self.config.batching
        deadline = time.perf_counter() + bc.max_wait_ms / 1000
        while len(jobs) < bc.max_batch_size:
            timeout = deadline - time.perf_counter()
            try:
                nxt = self._jobs.get(timeout=timeout) if timeout > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._stop.set()
                break
            jobs.append(nxt)
        return jobs

    def _loop(self) -> None:
        while not self._stop.is_set():
            jobs = self._collect()
            if jobs is None:
                break
            jobs = [j for j in jobs if not j.cancelled.is_set()]
            if not jobs:
                continue
            t0 = time.perf_counter()
            for j in jobs:
                j.started = t0
            try:
                self._run_isolated(jobs)
            finally:
                self.busy_s += time.perf_counter() - t0
                self.batches += 1
                self.batch_rows += len(jobs)
                self.max_batch_seen = max(self.max_batch_seen, len(jobs))
                if len({j.model for j in jobs}) > 1:
                    self.mixed_batches += 1

    def _run_isolated(self, jobs: list[Job]) -> None:
        """``run_batch(jobs)``; when it fails, each unanswered job runs again alone, so one
        job the engine cannot take fails only itself, never the requests batched with it."""
        try:
            self.run_batch(jobs)
            return
        except Exception as e:  # one bad batch must not kill the worker
            if len(jobs) == 1:
                self._fail(jobs[0], e)
                return
            log.warning("a batch of %d failed (%s): running its jobs one by one", len(jobs), e)
        for j in jobs:
            if j.settled:
                continue
            if j.cancelled.is_set():  # nobody waits for it: do not spend a run on it
                j.fail(BackendError(499, "the client went away"))
                continue
            if j.emitted:  # its client already holds part of an answer: cannot restart
                self._fail(j, BackendError(500, "the model failed while streaming this answer"))
                continue
            try:
                self.run_batch([j])
            except Exception as e:
                self._fail(j, e)

    @staticmethod
    def _fail(job: Job, e: Exception) -> None:
        if isinstance(e, BackendError):
            job.fail(e)
            return
        log.error("job for %s failed", job.model, exc_info=e)
        job.fail(BackendError(500, f"the model failed on this request: {type(e).__name__}"))

    @abstractmethod
    def run_batch(self, jobs: list[Job]) -> None:
        """Run ``jobs`` together; call ``job.emit``/``job.finish``/``job.fail`` for each."""

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.config.base,
            "models": sorted(self.models),
            "queue": self.queue_depth(),
            "batches": self.batches,
            "mean_batch": (self.batch_rows / self.batches) if self.batches else 0.0,
            "max_batch": self.max_batch_seen,
            "mixed_batches": self.mixed_batches,
            "busy_s": round(self.busy_s, 3),
        }


def make_label_prompt(tokenizer, sub: SubModel):
    """The exact label prompt training used (``zimo.prompts.LabelPrompt``; ``system`` and
    ``max_text_tokens`` come from the sub-model's ``label_task.json`` when it has one)."""
    from zimo.prompts import LabelPrompt

    kw: dict[str, Any] = {}
    if "system" in sub.metadata:
        kw["system"] = sub.metadata["system"]
    if sub.metadata.get("max_text_tokens"):
        kw["max_text_tokens"] = int(sub.metadata["max_text_tokens"])
    return LabelPrompt(tokenizer, sub.labels, sub.metadata.get("instruction"), **kw)

"""Continuous batching: one thread owns the model and decodes all running requests together.

Requests wait in a bounded queue (full -> `QueueFull`, which the server answers with 429). Between
two decode steps the thread admits waiting requests into free slots, reads up to a chunk of
admitted prompts (each into its request's own state, through the prefix-state cache; scoring the
prompt's own tokens in the same pass when the request asks, see `submit`), and drops requests
whose client went away; each step then samples one token for every running request and feeds them
in a single batched model call. Reading long prompts a chunk at a time keeps everyone else's
stream flowing while an image-heavy request joins. An RNN state is a few MB of fixed size, so
slots are cheap: memory grows with the number of running requests, never with their length.

The HTTP side talks to the thread through `Ticket`s: the thread posts ("text", (piece, scored))
(streaming requests only; `scored` holds the `TokenLogprob`s of the tokens generated since the
previous piece when log-probabilities were asked for, else None), ("done", GenerationResult) and
("error", exception) onto the ticket's asyncio queue, in the server's event loop. Tokens whose text
is never released (a stop token, a stop string) are scored in the result only. This thread is the
only one that runs the model.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Generator
from typing import Any

import torch

from ..generation import GenerationResult, SamplingParams
from ..inference import EncodedPrompt, ModRWKVPipeline, Prefilled, Row
from ..inference.engine import PREFILL_CHUNK_TOKENS
from .completions import scored_tokens

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """No room in the waiting queue."""


class Ticket:
    """One submitted request, as seen by both sides."""

    def __init__(self, scheduler: Scheduler, prompt: EncodedPrompt, params: SamplingParams | None, stream: bool,
                 loop: asyncio.AbstractEventLoop, logprobs: int | None = None, raw: bool = False,
                 score_prompt: int | None = None) -> None:
        self.prompt = prompt
        self.params = params  # None: nothing to generate, only the prompt to score
        self.stream = stream  # whether the client wants ("text", piece) events
        self.row_options = {"logprobs": logprobs, "raw": raw}  # see `Row`
        self.score_prompt = score_prompt
        # Generated tokens whose log-probabilities went out with a text piece; written by the scheduler
        # thread before it posts, so final once "done" has been read.
        self.scored_tokens = 0
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = False
        self._scheduler = scheduler
        self._loop = loop

    def post(self, kind: str, value: Any) -> None:
        """Called from the scheduler thread."""
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (server shutting down): nobody is listening
            self.cancelled = True

    def cancel(self) -> None:
        """Frees the request's slot at the next step (called when the client disconnects)."""
        if not self.cancelled:
            self.cancelled = True
            self._scheduler.wake()


class Scheduler:
    """Owns the decode thread. `max_batch` requests run at once; `max_queue` more may wait."""

    def __init__(self, pipeline: ModRWKVPipeline, max_batch: int = 32, max_queue: int = 64) -> None:
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch}, {max_queue}")
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._pending: collections.deque[Ticket] = collections.deque()
        self._cond = threading.Condition()
        self._batch = pipeline.engine.batch()
        # Admitted requests whose prompts are being read, oldest first: (ticket, row or None when
        # nothing is to be generated, prefill steps).
        self._prefilling: list[tuple[Ticket, Row | None, Generator[int, None, Prefilled]]] = []
        self._admitting = 0  # taken from the queue, not yet in _prefilling (slots they hold)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.stats = collections.Counter(steps=0, peak_batch=0, joined_running=0, completed=0, cancelled=0, failed=0)

    # ----------------------------------------------------------------------------- HTTP side

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="modrwkv-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def full(self) -> bool:
        """Whether a request submitted now would be refused."""
        with self._cond:
            return self._full()

    def _full(self) -> bool:
        # Submitted requests that free slots will take at the next step are not waiting: only those
        # beyond the free slots count against max_queue (a burst fills the slots, then the queue).
        submitted = sum(1 for t in self._pending if not t.cancelled)
        free_slots = max(0, self.max_batch - self._occupied())
        return submitted - free_slots >= self.max_queue

    def _occupied(self) -> int:
        return len(self._batch) + len(self._prefilling) + self._admitting

    def submit(self, prompt: EncodedPrompt, params: SamplingParams | None, stream: bool = False, *,
               logprobs: int | None = None, raw: bool = False, score_prompt: int | None = None) -> Ticket:
        """Queues a request; must be called from the event loop that will read its events.
        `logprobs` and `raw` are passed to its `Row`. `score_prompt` (a number of alternatives):
        the result's `prompt_logprobs` score the prompt's own tokens, from the same read of the
        prompt. `params` None generates nothing: the result has no tokens (then `score_prompt`
        is what the request is for)."""
        if params is None and score_prompt is None:
            raise ValueError("a request without sampling params must ask for its prompt's scores")
        ticket = Ticket(self, prompt, params, stream, asyncio.get_running_loop(), logprobs, raw, score_prompt)
        with self._cond:
            if self._full():
                raise QueueFull(f"every slot is taken and {self.max_queue} requests are waiting")
            self._pending.append(ticket)
            self._cond.notify_all()
        return ticket

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def snapshot(self) -> dict[str, int]:
        """Load and counters, for /health."""
        with self._cond:
            queued = sum(1 for t in self._pending if not t.cancelled)
        return {"running": self._occupied(), "prefilling": len(self._prefilling), "queued": queued,
                "slots": self.max_batch, **self.stats}

    # ----------------------------------------------------------------------------- decode thread

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        batch = self._batch
        while True:
            with self._cond:
                while not self._stopping and not self._pending and not self._prefilling and not batch.rows:
                    self._cond.wait()
                if self._stopping:
                    break
                admitted = []
                while self._pending and self._occupied() < self.max_batch:
                    ticket = self._pending.popleft()
                    if ticket.cancelled:  # its client left while it waited
                        self.stats["cancelled"] += 1
                    else:
                        admitted.append(ticket)
                        self._admitting += 1
            for ticket in admitted:
                self._admit(ticket)
                with self._cond:
                    self._admitting -= 1
            self._drop_cancelled()
            self._advance_prefill()
            if batch.rows:
                self._decode()
        self._shutdown()

    def _admit(self, ticket: Ticket) -> None:
        """Gives the request a slot; its prompt is then read a chunk at a time."""
        engine = self.pipeline.engine
        try:
            row = None if ticket.params is None else Row(engine, ticket.prompt, ticket.params, tag=ticket,
                                                         **ticket.row_options)
            steps = engine.prefill_steps(ticket.prompt, score_top=ticket.score_prompt)
        except Exception as exc:  # fails this request only, never the thread
            self._fail(ticket, exc)
            return
        self._prefilling.append((ticket, row, steps))

    def _fail(self, ticket: Ticket, exc: Exception) -> None:
        # A ValueError is the request's own fault; anything else is a bug worth its traceback.
        log.warning("request failed before decoding: %s", exc, exc_info=not isinstance(exc, ValueError))
        self.stats["failed"] += 1
        ticket.post("error", exc)

    def _drop_cancelled(self) -> None:
        gone = [row for row in self._batch.rows if row.tag.cancelled]
        if gone:
            self._batch.drop(gone)
        reading = [entry for entry in self._prefilling if entry[0].cancelled]
        if reading:
            self._prefilling = [entry for entry in self._prefilling if not entry[0].cancelled]
        if gone or reading:
            self.stats["cancelled"] += len(gone) + len(reading)
            log.info("dropped %d request(s) whose client went away", len(gone) + len(reading))

    def _advance_prefill(self) -> None:
        """Reads waiting prompts, oldest first, until PREFILL_CHUNK_TOKENS positions have been read
        (a short prompt then costs the running requests one short pause, a long one several) or,
        when nobody is decoding and so nobody would wait, until a request is ready to decode."""
        budget = PREFILL_CHUNK_TOKENS
        while self._prefilling and (budget > 0 or not self._batch.rows):
            ticket, row, steps = self._prefilling[0]
            try:
                budget -= next(steps)
                continue
            except StopIteration as done:
                prefilled: Prefilled = done.value
            except Exception as exc:  # a bad prompt fails its own request only
                self._prefilling.pop(0)
                self._fail(ticket, exc)
                continue
            self._prefilling.pop(0)
            if row is None:  # nothing to generate: the prompt's scores were the whole request
                self.stats["completed"] += 1  # before the answer is posted, as in _decode
                ticket.post("done", GenerationResult("", [], "length", list(ticket.prompt.ids), prefilled.cached_tokens,
                                                     prompt_logprobs=prefilled.prompt_logprobs))
                continue
            if self._batch.rows:
                self.stats["joined_running"] += 1
            self.pipeline.engine.admit(self._batch, row, prefilled)

    def _decode(self) -> None:
        batch = self._batch
        self.stats["peak_batch"] = max(self.stats["peak_batch"], len(batch))
        try:
            pieces, finished = batch.step()
        except Exception as exc:  # a failed step must not take the server down with it
            log.exception("decode step failed; failing its %d request(s)", len(batch))
            for row in batch.rows:
                row.tag.post("error", exc)
            self.stats["failed"] += len(batch)
            batch.drop(list(batch.rows))
            return
        self.stats["steps"] += 1
        for row, piece in pieces:
            ticket = row.tag
            if ticket.stream:
                scored = None
                if row.params.logprobs:
                    scored = scored_tokens(row.token_ids, row.logprobs, row.top_logprobs, ticket.scored_tokens)
                    ticket.scored_tokens = len(row.token_ids)
                ticket.post("text", (piece, scored))
        for row in finished:
            # Counted before it is posted: a client that has its answer finds it in /metrics.
            self.stats["completed"] += 1
            row.tag.post("done", row.result)

    def _shutdown(self) -> None:
        error = RuntimeError("the server is shutting down")
        with self._cond:
            waiting, self._pending = list(self._pending), collections.deque()
        for ticket in [*waiting, *(entry[0] for entry in self._prefilling), *(row.tag for row in self._batch.rows)]:
            ticket.post("error", error)
        self._prefilling = []
        self._batch.drop(list(self._batch.rows))

"""Choosing the next token: ChatRWKV-style penalties, bans, top-k / top-p and temperature.

Order of operations (the one ChatRWKV and the `rwkv` package use, so that RWKV users' settings
carry over): penalties and bans change the logits; top-k and top-p then choose the candidate set
from the *untempered* distribution; temperature finally reshapes the probabilities inside that set.
A temperature of 0 means greedy decoding (argmax after penalties and bans).

Every function works on a batch of rows with per-row settings, so that sequences with different
parameters can be decoded together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from modrwkv.sampling_params import SamplingParams

# Top-p tries a partial sort of this many tokens before falling back to sorting the vocabulary.
NUCLEUS_CANDIDATES = 512


def apply_penalties(
    logits: torch.Tensor,
    occurrence: torch.Tensor,
    seen: torch.Tensor,
    presence: torch.Tensor,
    frequency: torch.Tensor,
) -> torch.Tensor:
    """ChatRWKV's repetition penalty: logits[t] -= presence + occurrence[t] * frequency for every
    token t generated so far (`seen`). All tensors are [B, V] except presence/frequency ([B, 1])."""
    return logits - presence * seen - frequency * occurrence


def candidate_mask(sorted_probs: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Which of the descending-sorted probabilities [B, n] survive top-k ([B], 0 = off) and top-p
    ([B]): the smallest prefix whose mass reaches top_p, cut to k. The best token always survives,
    so a row can never end up with nothing to sample."""
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep = mass_before < top_p.unsqueeze(-1)
    rank = torch.arange(sorted_probs.shape[-1], device=sorted_probs.device)
    k = torch.where(top_k > 0, top_k, sorted_probs.shape[-1])
    keep &= rank < k.unsqueeze(-1)
    keep[:, 0] = True
    return keep


class BatchSampler:
    """Samples one token per row and keeps each row's penalty counts and random generator.

    Rows can be dropped with `select` when their sequences finish, so the sampler always matches
    the active batch of the decode loop, and joined with `cat` when sequences join it.
    """

    _PER_ROW = ("temperature", "top_p", "top_k", "presence", "frequency", "decay", "occurrence", "seen")

    def __init__(
        self,
        params: Sequence[SamplingParams],
        vocab_size: int,
        device: torch.device | str = "cpu",
        banned_tokens: Sequence[int] = (),
    ) -> None:
        """`banned_tokens` are banned for every row in addition to each row's own, e.g. ids that the
        tokenizer cannot decode."""
        B, V = len(params), vocab_size
        self.vocab_size = V

        def column(name: str) -> torch.Tensor:
            return torch.tensor([float(getattr(p, name)) for p in params], device=device)

        self.temperature = column("temperature")
        self.top_p = column("top_p")
        self.top_k = torch.tensor([p.top_k for p in params], device=device, dtype=torch.long)
        self.presence = column("presence_penalty").unsqueeze(-1)
        self.frequency = column("frequency_penalty").unsqueeze(-1)
        self.decay = column("penalty_decay").unsqueeze(-1)
        banned = torch.zeros(B, V, dtype=torch.bool, device=device)
        for row, p in enumerate(params):
            ids = [t for t in (*p.banned_tokens, *banned_tokens) if t < V]
            banned[row, ids] = True
        if bool(banned.all(dim=-1).any()):
            raise ValueError("every token of the vocabulary is banned for some sequence")
        # Each row's banned ids: a few per row, so rows join and leave without copying a [B, V] mask.
        self.banned_ids = list(banned.nonzero(as_tuple=True)[1].split(banned.sum(dim=-1).tolist()))
        self.occurrence = torch.zeros(B, V, device=device)
        self.seen = torch.zeros(B, V, dtype=torch.bool, device=device)
        self.generators = [
            None if p.seed is None else torch.Generator().manual_seed(p.seed) for p in params
        ]
        self.penalized = any(p.presence_penalty or p.frequency_penalty for p in params)
        self.stochastic: list[bool] = (self.temperature > 0).tolist()  # per row, kept on the host for `sample`
        self.scores: torch.Tensor | None = None  # the last step's scores, see `logprobs`
        self._log_probs: torch.Tensor | None = None  # their log-softmax, once per step for both queries
        self._banned_at: tuple[torch.Tensor, torch.Tensor] | None = None  # all rows' banned positions, see `_ban`

    @classmethod
    def cat(cls, samplers: Sequence[BatchSampler]) -> BatchSampler:
        """One sampler for the rows of several (in order), e.g. when sequences join a decode batch;
        each row keeps its settings, penalty counts and random generator."""
        if not samplers:
            raise ValueError("cat needs at least one sampler")
        if len(samplers) == 1:
            return samplers[0]
        if len({s.vocab_size for s in samplers}) != 1:
            raise ValueError(f"samplers of different vocabulary sizes: {sorted({s.vocab_size for s in samplers})}")
        joined = cls.__new__(cls)
        joined.vocab_size = samplers[0].vocab_size
        for name in cls._PER_ROW:
            setattr(joined, name, torch.cat([getattr(s, name) for s in samplers]))
        joined.generators = [g for s in samplers for g in s.generators]
        joined.penalized = any(s.penalized for s in samplers)
        joined.stochastic = [flag for s in samplers for flag in s.stochastic]
        joined.banned_ids = [ids for s in samplers for ids in s.banned_ids]
        joined.scores = joined._log_probs = None
        joined._banned_at = None
        return joined

    def select(self, rows: Sequence[int]) -> None:
        """Keeps only the given rows, in that order."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.temperature.device)
        for name in self._PER_ROW:
            setattr(self, name, getattr(self, name).index_select(0, index))
        self.generators = [self.generators[r] for r in rows]
        self.stochastic = [self.stochastic[r] for r in rows]
        self.banned_ids = [self.banned_ids[r] for r in rows]
        self._banned_at = None

    def _uniforms(self, rows: Sequence[int]) -> torch.Tensor:
        """One U[0, 1) draw per row from that row's generator (the global one when unseeded), drawn
        on the CPU so that a seed gives the same draws on every device and batch composition (the
        tokens too, unless the model's scores themselves differ by batch size in their last bits and
        two near-equal tokens trade places)."""
        draws = [torch.rand((), generator=self.generators[r]) for r in rows]
        return torch.stack(draws).to(self.temperature.device)

    def sample(
        self, logits: torch.Tensor, process: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Picks the next token of every row from logits [B, V'] (V' >= vocab_size: extra columns
        are ignored) and records it for the penalties. `process` may change the scores [B, V]
        after penalties and bans (per-row logits processors). Returns [B] token ids."""
        logits = logits[:, : self.vocab_size].float()
        if self.penalized:
            logits = apply_penalties(logits, self.occurrence, self.seen, self.presence, self.frequency)
        logits = self._ban(logits)
        if process is not None:
            logits = process(logits)
            if bool(torch.isneginf(logits).all(dim=-1).any()):
                raise ValueError("a logits processor left some row with no token it may sample")
        self.scores, self._log_probs = logits, None
        stochastic = [row for row, flag in enumerate(self.stochastic) if flag]
        if stochastic and len(stochastic) == len(self.stochastic):  # no greedy row: no argmax, no row gather
            tokens = self._sample_rows(logits, stochastic, None)
        else:
            tokens = logits.argmax(dim=-1)
            if stochastic:
                index = torch.tensor(stochastic, device=logits.device)
                tokens[index] = self._sample_rows(logits[index], stochastic, index)
        self._record(tokens)
        return tokens

    def _ban(self, logits: torch.Tensor) -> torch.Tensor:
        """A copy of logits [B, V] with -inf at the banned positions. Writing the few banned
        positions into a copy costs a sixth of a `masked_fill` over a whole [B, V] mask on a
        65536-token vocabulary (CPU, 1 thread); the positions change only when the rows do."""
        if self._banned_at is None:
            counts = torch.tensor([len(ids) for ids in self.banned_ids], device=logits.device)
            rows = torch.arange(len(self.banned_ids), device=logits.device).repeat_interleave(counts)
            self._banned_at = rows, torch.cat(self.banned_ids).to(logits.device)
        return logits.index_put(self._banned_at, logits.new_full((), -math.inf))

    def logprobs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B] of the given tokens under the last step's scores (after penalties,
        bans and processors; before temperature, top-k and top-p)."""
        return self._step_log_probs().gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    def top_logprobs(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `k` most likely tokens of every row under the last step's scores (as `logprobs`):
        log-probabilities [B, k] and ids [B, k], best first."""
        return self._step_log_probs().topk(k, dim=-1)

    def _step_log_probs(self) -> torch.Tensor:
        assert self.scores is not None, "sample first"
        if self._log_probs is None:
            self._log_probs = self.scores.log_softmax(dim=-1)
        return self._log_probs

    def _sample_rows(self, logits: torch.Tensor, rows: list[int], index: torch.Tensor | None) -> torch.Tensor:
        """Draws tokens for the given (non-greedy) rows from their penalised, banned logits;
        `index` holds `rows` as a tensor, None when they are all the rows."""
        temperature, top_k, top_p = self.temperature, self.top_k, self.top_p
        if index is not None:
            temperature, top_k, top_p = temperature[index], top_k[index], top_p[index]
        temperature = temperature.unsqueeze(-1)
        uniforms = self._uniforms(rows)
        if not bool(((top_k > 0) | (top_p < 1)).any()):  # no filter: no sort needed
            return _inverse_cdf((logits / temperature).softmax(dim=-1), uniforms)
        probs, ids = _sorted_candidates(logits.softmax(dim=-1), top_k, top_p)
        keep = candidate_mask(probs, top_k, top_p)
        weights = (logits.gather(-1, ids) / temperature).masked_fill(~keep, -math.inf).softmax(dim=-1)
        return ids.gather(-1, _inverse_cdf(weights, uniforms).unsqueeze(-1)).squeeze(-1)

    def _record(self, tokens: torch.Tensor) -> None:
        if not self.penalized:
            return
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        self.occurrence.mul_(self.decay)
        self.occurrence[rows, tokens] += 1
        self.seen[rows, tokens] = True


def _sorted_candidates(
    probs: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable tokens in descending order (probabilities, ids), as many as the filters
    can keep. A full sort of a 65536-token vocabulary costs milliseconds per step on a CPU; top-k
    bounds the count, and for top-p a partial sort usually already holds the whole nucleus."""
    V = probs.shape[-1]
    if bool((top_k > 0).all()):
        n = min(int(top_k.max()), V)
        return probs.topk(n, dim=-1) if n < V else probs.sort(dim=-1, descending=True)
    if bool((top_p < 1).all()) and V > NUCLEUS_CANDIDATES:
        values, ids = probs.topk(NUCLEUS_CANDIDATES, dim=-1)
        # Past a prefix holding top_p of the mass, nothing survives `candidate_mask`.
        if bool((values.sum(dim=-1) >= top_p).all()):
            return values, ids
    return probs.sort(dim=-1, descending=True)


def _inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Index drawn from each row of probs [B, n] given U[0, 1) draws [B]. The left search never
    lands on a zero-probability entry (banned or filtered tokens)."""
    cdf = probs.cumsum(dim=-1)
    target = uniforms.unsqueeze(-1) * cdf[:, -1:]
    return torch.searchsorted(cdf, target).squeeze(-1).clamp_(max=probs.shape[-1] - 1)

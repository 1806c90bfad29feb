"""Log-probabilities of a prompt's own tokens, gathered while the prompt is read.

Reading a prompt (`prefill_steps`) runs the model over every position anyway; the final hidden
state at position i, through the head, gives the distribution of token i + 1. `PromptScorer` takes
those hidden states chunk by chunk, so scoring a prompt costs its head products only, never a
second read, and happens wherever the prompt is read (in the server, on the scheduler's thread).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from modrwkv.lm import RWKV7
from modrwkv.lm.ops.linear import linear

# Positions whose vocabulary logits are materialised at once (256 x 65536 fp32 = 64 MiB).
HEAD_CHUNK = 256


@dataclasses.dataclass
class TokenLogprob:
    """A token's log-probability and the `top` most likely tokens with theirs, best first."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


def token_logprobs(logits: torch.Tensor, tokens: Sequence[int], top: int) -> list[TokenLogprob]:
    """`TokenLogprob`s of `tokens[i]` under the model's log-softmax of `logits[i]` ([N, V])."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp.gather(1, torch.tensor(list(tokens), device=logp.device).unsqueeze(1)).squeeze(1).tolist()
    if top > 0:
        values, indices = logp.topk(top, dim=-1)
        alternatives = [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
    else:
        alternatives = [[] for _ in tokens]
    return [TokenLogprob(t, lp, alt) for t, lp, alt in zip(tokens, chosen, alternatives)]


class PromptScorer:
    """Scores `ids[1:]`, each given the tokens before it, with `top` alternatives, from the final
    hidden states of `ids` as they are read (`read`, in order, all positions from the first)."""

    def __init__(self, ids: Sequence[int], top: int) -> None:
        self.ids = list(ids)
        self.top = top
        self.scores: list[TokenLogprob] = []
        self._positions_read = 0

    def read(self, lm: RWKV7, hidden: torch.Tensor) -> None:
        """Takes the final hidden states [T, C] of the next T positions of the prompt."""
        begin = self._positions_read
        self._positions_read += hidden.shape[0]
        if self._positions_read > len(self.ids):
            raise ValueError(f"read {self._positions_read} positions of a {len(self.ids)}-token prompt")
        end = min(self._positions_read, len(self.ids) - 1)  # the last position predicts what follows the prompt
        for start in range(begin, end, HEAD_CHUNK):
            stop = min(start + HEAD_CHUNK, end)
            logits = linear(lm.head, hidden[start - begin : stop - begin], 1)
            self.scores += token_logprobs(logits, self.ids[start + 1 : stop + 1], self.top)

"""Generation: sampling rules, streaming text, stop conditions, batched decoding, resuming from states."""

import math
import re

import pytest
import torch
from conftest import TINY, make_model

from modrwkv.generation import (
    BatchSampler,
    IncrementalDetokenizer,
    SamplingParams,
    apply_penalties,
    candidate_mask,
    generate,
    generate_batch,
    prefill,
    sampling,
    stream,
)
from modrwkv.generation.engine import undecodable_ids
from modrwkv.lm import RWKV7Config, RWKV7Output, RWKV7State
from modrwkv.tokenizer import WorldTokenizer

GREEDY = SamplingParams(temperature=0, max_new_tokens=8)


@pytest.fixture(scope="module")
def world() -> WorldTokenizer:
    return WorldTokenizer()


def prompt_ids(n: int, seed: int) -> list[int]:
    return torch.randint(1, TINY.vocab_size, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


class ByteTokenizer:
    """One token per byte (id = byte + 1, id 0 = end of text), so multi-byte characters are split."""

    def encode(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode("utf-8")]

    def token_bytes(self, token_id: int) -> bytes:
        if token_id == 0:
            return b""
        if not 1 <= token_id <= 256:
            raise ValueError(f"token id {token_id} is not in the vocabulary")
        return bytes([token_id - 1])


class ScriptedModel:
    """A stand-in for RWKV7 whose next token is read from a script, whatever the input.

    The number of tokens read so far lives in the state (att_shift[0, row, 0]), so the stub follows
    each row exactly through padding, row dropping and state selection like the real model.
    """

    def __init__(self, script: list[int], prompt_len: int = 1, vocab_size: int = 257) -> None:
        self.config = RWKV7Config(n_layer=1, n_embd=64, vocab_size=vocab_size)
        self.script, self.prompt_len = script, prompt_len
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def init_state(self, batch_size: int = 1) -> RWKV7State:
        return RWKV7State.zeros(self.config, batch_size)

    def __call__(self, input_ids, *, state, attention_mask=None, logits="all"):
        batch, time = input_ids.shape
        read = torch.full((batch,), time) if attention_mask is None else attention_mask.sum(1)
        new = state.clone()
        new.att_shift[0, :, 0] += read
        out = None
        if logits != "none":
            step = (new.att_shift[0, :, 0].long() - self.prompt_len).clamp(max=len(self.script) - 1)
            out = torch.zeros(input_ids.shape[0], self.config.vocab_size)
            out[torch.arange(len(step)), torch.tensor(self.script)[step]] = 10.0
        return RWKV7Output(out, new, hidden=None)


def scripted_stream(script_text: str, params: SamplingParams, tokenizer=None):
    tokenizer = tokenizer or ByteTokenizer()
    script = tokenizer.encode(script_text)
    model = ScriptedModel(script, vocab_size=65536 if isinstance(tokenizer, WorldTokenizer) else 257)
    s = stream(model, tokenizer, [1], params)
    pieces = list(s)
    return pieces, s.result


# --- sampling parameters and rules --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"top_k": -1}, "top_k"),
        ({"penalty_decay": 1.5}, "penalty_decay"),
        ({"stop_strings": ("",)}, "stop_strings"),
        ({"stop_tokens": (0,)}, "both stop and banned"),
        ({"banned_tokens": (-3,)}, "banned_tokens"),
    ],
)
def test_sampling_params_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_sampling_params_reject_a_single_string_as_stop_strings():
    with pytest.raises(TypeError, match="stop_strings"):
        SamplingParams(stop_strings="\n\n")


def test_sampling_params_defaults_ban_end_of_text():
    params = SamplingParams(stop_strings=["\n\n"])
    assert params.banned_tokens == (0,)
    assert params.stop_strings == ("\n\n",)  # lists are stored as tuples


def test_apply_penalties_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0, 0.5]])
    occurrence = torch.tensor([[1.25, 0.5, 0.0, 0.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_penalties(logits, occurrence, seen, torch.tensor([[0.5]]), torch.tensor([[1.0]]))
    # 2 - (0.5 + 1.25), 1 - (0.5 + 0.5), unseen tokens untouched
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.0, 0.0, 0.5]]))


def test_penalties_decay_chatrwkv_style():
    """Greedy steps on fixed logits, worked out by hand with presence 0.5, frequency 1, decay 0.5."""
    params = SamplingParams(
        temperature=0, presence_penalty=0.5, frequency_penalty=1.0, penalty_decay=0.5, banned_tokens=()
    )
    sampler = BatchSampler([params], vocab_size=4)
    logits = torch.tensor([[2.0, 1.0, 0.0, 0.5]])
    # step 1: no penalty -> 0.  step 2: [0.5, 1, 0, 0.5] -> 1.  occurrence [0.5, 1, 0, 0]
    # step 3: [1.0, -0.5, 0, 0.5] -> 0; occurrence [1.25, 0.5, 0, 0]
    # step 4: [0.25, 0, 0, 0.5] -> 3; occurrence [0.625, 0.25, 0, 1]
    tokens = [int(sampler.sample(logits)) for _ in range(4)]
    assert tokens == [0, 1, 0, 3]
    torch.testing.assert_close(sampler.occurrence, torch.tensor([[0.625, 0.25, 0.0, 1.0]]))
    assert sampler.seen.tolist() == [[True, True, False, True]]


def test_presence_penalty_outlives_decayed_counts():
    params = SamplingParams(temperature=0, presence_penalty=5.0, penalty_decay=0.0, banned_tokens=())
    sampler = BatchSampler([params], vocab_size=3)
    logits = torch.tensor([[3.0, 2.0, 0.0]])
    # 0, then 1 (0 is penalised), then 2: both 0 and 1 keep their presence penalty although
    # decay 0 has wiped token 0's occurrence count
    assert [int(sampler.sample(logits)) for _ in range(3)] == [0, 1, 2]


def test_candidate_mask_top_p_and_top_k():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).expand(6, -1)
    top_p = torch.tensor([0.75, 0.76, 0.4, 1.0, 1.0, 0.9])
    top_k = torch.tensor([0, 0, 0, 1, 3, 1])
    keep = candidate_mask(probs, top_k, top_p).tolist()
    assert keep == [
        [True, True, False, False],  # mass before token 2 is exactly 0.75: already reached
        [True, True, True, False],
        [True, False, False, False],  # the best token always survives
        [True, False, False, False],
        [True, True, True, False],
        [True, False, False, False],
    ]


def sample_many(logits: torch.Tensor, n: int, **kwargs) -> torch.Tensor:
    """n independent draws: a batch of n identical rows with different seeds."""
    kwargs.setdefault("banned_tokens", ())
    params = [SamplingParams(seed=i, **kwargs) for i in range(n)]
    return BatchSampler(params, logits.shape[-1]).sample(logits.expand(n, -1))


def test_top_p_and_temperature_distribution():
    logits = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log()
    tokens = sample_many(logits, 4000, top_p=0.7)
    assert set(tokens.tolist()) == {0, 1}
    assert abs((tokens == 0).float().mean().item() - 2 / 3) < 0.03  # 0.5 / (0.5 + 0.25)
    # temperature 0.5 squares the kept probabilities: 0.25 / (0.25 + 0.0625) = 0.8
    tokens = sample_many(logits, 4000, top_p=0.7, temperature=0.5)
    assert abs((tokens == 0).float().mean().item() - 0.8) < 0.03
    assert set(sample_many(logits, 200, top_k=1).tolist()) == {0}
    distinct = torch.tensor([[0.5, 0.25, 0.15, 0.1]]).log()
    assert set(sample_many(distinct, 400, top_k=3).tolist()) == {0, 1, 2}


def test_unfiltered_sampling_matches_probabilities():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    tokens = sample_many(logits, 4000)
    freq = torch.bincount(tokens, minlength=3).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.03, rtol=0)


def test_banned_tokens_are_never_sampled():
    logits = torch.zeros(1, 50)
    logits[0, 0], logits[0, 7] = 20.0, 19.0  # the banned favourites
    for kwargs in ({}, {"top_p": 0.5}, {"top_k": 2}, {"temperature": 3.0}):
        tokens = sample_many(logits, 300, banned_tokens=(0, 7), **kwargs)
        assert not set(tokens.tolist()) & {0, 7}
    # token 0 is banned by default, also for greedy decoding
    assert int(BatchSampler([SamplingParams(temperature=0)], 50).sample(logits)) == 7
    with pytest.raises(ValueError, match="every token"):
        BatchSampler([SamplingParams(banned_tokens=(0, 1))], 2)


class CountingTokenizer:
    """A World tokenizer that counts the ids it is asked for."""

    def __init__(self, **options) -> None:
        self.inner = WorldTokenizer(**options)
        self.lookups = 0

    def token_bytes(self, token_id: int) -> bytes:
        self.lookups += 1
        return self.inner.token_bytes(token_id)


def test_undecodable_ids_are_found_once_per_tokenizer():
    """The ids without bytes: 65530..65535 for plain World (its vocabulary ends at 65529), less the
    ids a tokenizer's special tokens take; asked once per tokenizer and vocabulary size, not on
    every generate() call."""
    plain = CountingTokenizer()
    assert list(undecodable_ids(plain, 65536)) == list(range(65530, 65536))
    assert plain.lookups == 65536
    assert list(undecodable_ids(plain, 65536)) == list(range(65530, 65536))
    assert plain.lookups == 65536  # cached
    assert not undecodable_ids(plain, 1024)  # another vocabulary size is its own entry
    special = CountingTokenizer(special_tokens={"<a>": 65530, "<b>": 65532})
    assert list(undecodable_ids(special, 65536)) == [65531, 65533, 65534, 65535]
    model = make_model(RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, head_size=64, dim_w=32, dim_a=32,
                                   dim_v=32, dim_g=64))
    calls = plain.lookups
    for _ in range(3):
        generate(model, plain, [5, 6], SamplingParams(temperature=0, max_new_tokens=2))
    assert plain.lookups - calls <= 3 * 2  # only the generated tokens' bytes, for their text


def test_greedy_is_argmax():
    logits = torch.randn(5, 300, generator=torch.Generator().manual_seed(0))
    sampler = BatchSampler([SamplingParams(temperature=0, banned_tokens=())] * 5, 300)
    assert sampler.sample(logits).tolist() == logits.argmax(-1).tolist()


def test_seed_makes_sampling_reproducible():
    logits = torch.randn(1, 1000, generator=torch.Generator().manual_seed(1))

    def run(seed: int) -> list[int]:
        sampler = BatchSampler([SamplingParams(seed=seed, top_p=0.9, presence_penalty=0.3)], 1000)
        return [int(sampler.sample(logits)) for _ in range(30)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_partial_sort_for_top_p_equals_full_sort(monkeypatch):
    logits = 4 * torch.randn(3, 5000, generator=torch.Generator().manual_seed(2))  # peaked rows

    def run() -> list[int]:
        params = [SamplingParams(seed=i, top_p=0.8) for i in range(3)]
        sampler = BatchSampler(params, 5000)
        return [t for _ in range(20) for t in sampler.sample(logits).tolist()]

    fast = run()
    monkeypatch.setattr(sampling, "NUCLEUS_CANDIDATES", 10**9)  # forces the full sort
    assert run() == fast


# --- streaming and stop conditions ------------------------------------------------------------


TEXT = "Grüße, 你好世界 🙂 ok"


def test_detokenizer_never_splits_characters():
    tok = ByteTokenizer()
    detok = IncrementalDetokenizer(tok.token_bytes)
    pieces = [detok.push(t) for t in tok.encode(TEXT)] + [detok.finish()]
    assert "".join(pieces) == TEXT == detok.text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces.count("") > 10  # the continuation bytes of multi-byte characters wait


def test_streaming_through_generation_never_splits_characters():
    pieces, result = scripted_stream(TEXT, SamplingParams(temperature=0, max_new_tokens=len(TEXT.encode())))
    assert all(p and "\ufffd" not in p for p in pieces)
    assert "".join(pieces) == result.text == TEXT
    assert result.finish_reason == "length" and result.stop is None
    assert result.token_ids == ByteTokenizer().encode(TEXT)


def test_incomplete_character_at_the_end_is_replaced():
    tok = ByteTokenizer()
    detok = IncrementalDetokenizer(tok.token_bytes)
    pieces = [detok.push(t) for t in tok.encode("a你")[:-1]] + [detok.finish()]
    assert "".join(pieces) == "a\ufffd"


def test_stop_string_spanning_two_tokens():
    params = SamplingParams(temperature=0, max_new_tokens=50, stop_strings=("\n\n",))
    pieces, result = scripted_stream("Hello\n\nUser: more", params)
    assert result.text == "Hello" == "".join(pieces)
    assert result.finish_reason == "stop" and result.stop == "\n\n"
    assert result.token_ids == ByteTokenizer().encode("Hello\n\n")  # generation stopped right there
    assert all("\n" not in p for p in pieces)


def test_held_back_prefix_is_released_when_it_is_no_stop():
    params = SamplingParams(temperature=0, max_new_tokens=8, stop_strings=("\n\nUser:",))
    pieces, result = scripted_stream("a\n\nb\n\nUs", params)
    assert result.finish_reason == "length"
    assert "".join(pieces) == result.text == "a\n\nb\n\nUs"
    assert pieces[-1] == "\n\nUs"  # held until the end, since it could have begun "\n\nUser:"


def test_stop_string_inside_a_multi_character_token(world):
    text = "The quick brown fox jumps"
    params = SamplingParams(temperature=0, max_new_tokens=20, stop_strings=("k br", "fox"))
    pieces, result = scripted_stream(text, params, tokenizer=world)
    assert result.text == "".join(pieces) == "The quic"
    assert result.stop == "k br"


def test_stop_token_ends_generation_without_its_text():
    tok = ByteTokenizer()
    stop = tok.encode("\x17")[0]
    params = SamplingParams(temperature=0, max_new_tokens=50, stop_tokens=(stop,))
    pieces, result = scripted_stream("yes\x17no", params)
    assert result.text == "".join(pieces) == "yes"
    assert result.finish_reason == "stop" and result.stop == stop
    assert result.token_ids == tok.encode("yes\x17")


def test_callback_receives_the_streamed_text():
    script = ByteTokenizer().encode(TEXT)
    received = []
    params = SamplingParams(temperature=0, max_new_tokens=len(script))
    result = generate(ScriptedModel(script), ByteTokenizer(), [1], params, on_text=received.append)
    assert "".join(received) == result.text == TEXT


# --- batched generation, states ---------------------------------------------------------------


def test_batched_equals_sequential_greedy(tiny_model, world):
    prompts = [prompt_ids(n, seed=n) for n in (1, 5, 23)]
    params = [GREEDY, SamplingParams(temperature=0, max_new_tokens=3), GREEDY]
    batch_sizes = []
    hook = tiny_model.register_forward_pre_hook(
        lambda _module, args, _kwargs: batch_sizes.append(args[0].shape[0]), with_kwargs=True
    )
    try:
        batched = generate_batch(tiny_model, world, prompts, params)
    finally:
        hook.remove()
    assert batch_sizes[:4] == [3, 3, 3, 3] and batch_sizes[4:] == [2] * 5  # row 1 left after 3 tokens
    for prompt, p, got in zip(prompts, params, batched):
        alone = generate(tiny_model, world, prompt, p)
        assert got.token_ids == alone.token_ids
        assert got.text == alone.text
        assert got.finish_reason == "length" and got.prompt_tokens == len(prompt)
        assert len(got.token_ids) == p.max_new_tokens
        torch.testing.assert_close(got.state.wkv, alone.state.wkv, atol=1e-4, rtol=1e-4)


def test_batched_equals_sequential_with_seeds(tiny_model, world):
    prompts = [prompt_ids(n, seed=n) for n in (2, 9)]
    params = [SamplingParams(seed=s, top_p=0.9, max_new_tokens=6) for s in (11, 12)]
    batched = generate_batch(tiny_model, world, prompts, params)
    for prompt, p, got in zip(prompts, params, batched):
        assert got.token_ids == generate(tiny_model, world, prompt, p).token_ids
    assert batched[0].token_ids == generate(tiny_model, world, prompts[0], params[0]).token_ids  # same seed again


def test_resume_from_saved_state(tiny_model, world, tmp_path):
    prompt = prompt_ids(12, seed=3)
    direct = generate(tiny_model, world, prompt, GREEDY)

    prompt_state = prefill(tiny_model, world, prompt[:-1])
    prompt_state.save(tmp_path / "prompt.safetensors", {"note": "test"})
    loaded = RWKV7State.load(tmp_path / "prompt.safetensors", tiny_model.config)
    resumed = generate(tiny_model, world, prompt[-1:], GREEDY, state=loaded)
    assert resumed.token_ids == direct.token_ids and resumed.prompt_tokens == 1

    assert not direct.state.wkv.is_inference() and not prompt_state.wkv.is_inference()
    # the final state covers prompt + all generated tokens, so a conversation can continue from it
    follow_up = prompt_ids(4, seed=4)
    continued = generate(tiny_model, world, follow_up, GREEDY, state=direct.state)
    from_scratch = generate(tiny_model, world, prompt + direct.token_ids + follow_up, GREEDY)
    assert continued.token_ids == from_scratch.token_ids


def test_bad_state_files_are_clear_errors(tiny_model, world, tmp_path):
    from safetensors.torch import save_file

    good = tiny_model.init_state(1)
    cases = {
        "rank": ({"att_shift": torch.zeros(3), "wkv": good.wkv, "ffn_shift": good.ffn_shift},
                 "not an RWKV-7 state: att_shift has shape (3,), expected 3 dimensions"),
        "rows": ({"att_shift": good.att_shift, "wkv": tiny_model.init_state(2).wkv, "ffn_shift": good.ffn_shift},
                 "disagree on (layers, batch rows)"),
        "ints": ({"att_shift": good.att_shift.long(), "wkv": good.wkv, "ffn_shift": good.ffn_shift},
                 "att_shift is torch.int64, expected floating point"),
        "nan": ({"att_shift": good.att_shift, "wkv": good.wkv.clone().fill_(float("nan")), "ffn_shift": good.ffn_shift},
                "holding NaN or infinity: ['wkv']"),
        "missing": ({"att_shift": good.att_shift}, "missing tensor(s) ['wkv', 'ffn_shift']"),
    }
    for name, (tensors, message) in cases.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / f"{name}.state"))
        with pytest.raises(ValueError, match=re.escape(f"{name}.state: ") + ".*" + re.escape(message)):
            RWKV7State.load(tmp_path / f"{name}.state", tiny_model.config)
    with pytest.raises(ValueError, match="is a folder, not a file"):
        RWKV7State.load(tmp_path, tiny_model.config)
    with pytest.raises(FileNotFoundError, match="no such file"):
        RWKV7State.load(tmp_path / "absent.state", tiny_model.config)
    RWKV7State.zeros(RWKV7Config(n_layer=1, n_embd=64, vocab_size=1024)).save(tmp_path / "other.state")
    with pytest.raises(ValueError, match="state tensor att_shift has shape \\(1, 1, 64\\), but this model needs"):
        RWKV7State.load(tmp_path / "other.state", tiny_model.config)
    tiny_model.init_state(2).save(tmp_path / "two.state")
    two = RWKV7State.load(tmp_path / "two.state", tiny_model.config)
    with pytest.raises(ValueError, match="the start state has 2 rows; 1 prompt\\(s\\) need 1 row$"):
        generate(tiny_model, world, [1, 2], GREEDY, state=two)
    with pytest.raises(ValueError, match="has 2 rows; 3 prompt\\(s\\) need 1 row \\(shared\\) or 3 rows"):
        generate_batch(tiny_model, world, [[1], [2], [3]], GREEDY, states=two)


def test_shared_start_state_for_a_batch(tiny_model, world):
    system = prefill(tiny_model, world, prompt_ids(7, seed=5))
    prompts = [prompt_ids(n, seed=10 + n) for n in (3, 6)]
    batched = generate_batch(tiny_model, world, prompts, GREEDY, states=system)
    per_prompt = generate_batch(tiny_model, world, prompts, GREEDY, states=[system, None])
    for prompt, got in zip(prompts, batched):
        assert got.token_ids == generate(tiny_model, world, prompt, GREEDY, state=system).token_ids
    assert per_prompt[0].token_ids == batched[0].token_ids
    assert per_prompt[1].token_ids == generate(tiny_model, world, prompts[1], GREEDY).token_ids


def test_generation_input_errors(tiny_model, world):
    with pytest.raises(ValueError, match="at least one token"):
        generate(tiny_model, world, [], GREEDY)
    with pytest.raises(ValueError, match="sampling params"):
        generate_batch(tiny_model, world, [[1], [2]], [GREEDY])
    with pytest.raises(ValueError, match="start state"):
        generate_batch(tiny_model, world, [[1], [2]], GREEDY, states=tiny_model.init_state(3))
    with pytest.raises(RuntimeError, match="not finished"):
        _ = stream(tiny_model, world, [1], GREEDY).result


def test_logits_processor_restricts_its_own_row_only(tiny_model, world):
    """A per-row allowed-token mask (the hook constrained decoding plugs into) confines that row to
    the allowed ids, sees the ids generated so far, and leaves the other rows exactly as alone."""
    allowed = torch.tensor([300, 301, 302, 555])
    seen = []

    def only_allowed(generated, logits):
        seen.append(list(generated))
        masked = torch.full_like(logits, -math.inf)
        masked[allowed] = logits[allowed]
        return masked

    prompts = [prompt_ids(7, 1), prompt_ids(5, 2)]
    params = SamplingParams(temperature=0, max_new_tokens=6)
    constrained, free = generate_batch(tiny_model, world, prompts, params, logits_processors=[only_allowed, None])
    assert set(constrained.token_ids) <= set(allowed.tolist())
    assert seen == [constrained.token_ids[:i] for i in range(6)]
    assert free.token_ids == generate(tiny_model, world, prompts[1], params).token_ids
    # the mask picks the best allowed token: the argmax of the model's logits over the allowed ids
    with torch.no_grad():
        logits = tiny_model(torch.tensor([prompts[0]]), logits="last").logits[0]
    assert constrained.token_ids[0] == int(allowed[logits[allowed].argmax()])
    with pytest.raises(ValueError, match="no token it may sample"):
        generate(tiny_model, world, prompts[0], params, logits_processor=lambda _ids, l: torch.full_like(l, -math.inf))


def test_logprobs_are_the_model_log_softmax(tiny_model, world):
    """`logprobs=True` returns log p(token) of every generated token, recomputed here by feeding
    the prompt and the reply through the model in one pass."""
    prompt = prompt_ids(9, 3)
    result = generate(tiny_model, world, prompt, SamplingParams(temperature=1.0, seed=5, max_new_tokens=5, logprobs=True))
    assert generate(tiny_model, world, prompt, GREEDY).logprobs is None
    with torch.no_grad():
        logits = tiny_model(torch.tensor([prompt + result.token_ids[:-1]])).logits[0, len(prompt) - 1 :]
    logits[:, 0] = -math.inf  # token 0 is banned by default, so it has no probability mass
    want = logits.log_softmax(-1).gather(-1, torch.tensor(result.token_ids)[:, None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(result.logprobs), want, rtol=1e-4, atol=1e-4)

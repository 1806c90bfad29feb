"""modrwkv's RWKV-7 against the official `rwkv` 0.8.32 package on random checkpoints."""

import warnings

import pytest
import torch

from modrwkv.lm import RWKV7Config, load_model
from modrwkv.lm.random_weights import random_official_state_dict

# One xdist worker runs the module: each config's pair of models (the official one built by `rwkv`) made once,
# not once on each worker.
pytestmark = pytest.mark.xdist_group("test_lm_parity")

TOL = 1e-4
LENGTHS = (1, 15, 16, 17, 100, 333)
CONFIGS = {
    # 3 layers x 256 (4 heads); official checkpoints that carry layer 0's unused v0/v1/v2
    "with_layer0_v": (RWKV7Config(n_layer=3, n_embd=256, vocab_size=2048, dim_w=32, dim_a=32, dim_v=32, dim_g=64), True),
    # 2 layers x 128, without them
    "without_layer0_v": (RWKV7Config(n_layer=2, n_embd=128, vocab_size=1024, dim_w=32, dim_a=64, dim_v=32, dim_g=32), False),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    config, layer0_v = CONFIGS[request.param]
    sd = random_official_state_dict(config, seed=7, layer0_value_lora=layer0_v)
    path = tmp_path_factory.mktemp("ckpt") / "rwkv7-random.pth"
    torch.save({k: v.to(torch.bfloat16) for k, v in sd.items()}, path)  # official files are bf16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from rwkv.model import RWKV

        official = RWKV(model=str(path)[: -len(".pth")], strategy="cpu fp32")
    ours = load_model(path)
    return official, ours, config


def official_logits(official, tokens):
    with torch.no_grad():
        out, state = official.forward(list(tokens), None, full_output=True)
    return out.reshape(len(tokens), -1), state


def tokens_for(config, n, seed=0):
    return torch.randint(1, config.vocab_size, (n,), generator=torch.Generator().manual_seed(seed + n)).tolist()


@pytest.mark.parametrize("n", LENGTHS)
def test_full_sequence_matches_official(pair, n):
    official, ours, config = pair
    tokens = tokens_for(config, n)
    want, _ = official_logits(official, tokens)
    with torch.no_grad():
        got = ours(torch.tensor([tokens])).logits[0]
    assert (got - want).abs().max().item() <= TOL


@pytest.mark.parametrize("n", LENGTHS)
def test_token_by_token_matches_official(pair, n):
    official, ours, config = pair
    tokens = tokens_for(config, n)
    want, _ = official_logits(official, tokens)
    state, got = None, []
    with torch.no_grad():
        for t in tokens:
            out = ours(torch.tensor([[t]]), state=state, logits="last")
            state = out.state
            got.append(out.logits[0])
    assert (torch.stack(got) - want).abs().max().item() <= TOL


@pytest.mark.parametrize("n", [n for n in LENGTHS if n > 1])
def test_split_prefill_matches_official(pair, n):
    official, ours, config = pair
    tokens = tokens_for(config, n)
    want, _ = official_logits(official, tokens)
    cut = n // 3 + 1
    with torch.no_grad():
        first = ours(torch.tensor([tokens[:cut]]))
        second = ours(torch.tensor([tokens[cut:]]), state=first.state)
    got = torch.cat([first.logits[0], second.logits[0]])
    assert (got - want).abs().max().item() <= TOL


def test_final_state_matches_official(pair):
    official, ours, config = pair
    tokens = tokens_for(config, 100)
    _, their_state = official_logits(official, tokens)
    with torch.no_grad():
        state = ours(torch.tensor([tokens])).state
    for i in range(config.n_layer):
        assert torch.allclose(state.att_shift[i, 0], their_state[3 * i], atol=1e-5)
        assert torch.allclose(state.wkv[i, 0], their_state[3 * i + 1], atol=1e-4)
        assert torch.allclose(state.ffn_shift[i, 0], their_state[3 * i + 2], atol=1e-5)


def test_greedy_continuation_identical(pair):
    official, ours, config = pair
    prompt = tokens_for(config, 17, seed=3)
    with torch.no_grad():
        out, state = official.forward(prompt, None)
        theirs = []
        for _ in range(30):
            t = int(torch.argmax(out))
            theirs.append(t)
            out, state = official.forward([t], state)
        result = ours(torch.tensor([prompt]), logits="last")
        mine = []
        for _ in range(30):
            t = int(result.logits[0].argmax())
            mine.append(t)
            result = ours(torch.tensor([[t]]), state=result.state, logits="last")
    assert mine == theirs

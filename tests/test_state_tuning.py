"""State tuning: a learned initial WKV state per layer, the only thing trained (train.stage "state").

Checked against independent expectations: the gradient w.r.t. the initial state against the
per-token reference recurrence and finite differences; the loss in training against the decode
engine reading token by token from the saved-and-reloaded state; a training step against a
snapshot of every other weight; generation before and after a save/load round trip.
"""

from pathlib import Path

import pytest
import torch
import yaml

from modrwkv.cli import main
from modrwkv.data.sample import Message, Sample
from modrwkv.generation import SamplingParams, generate
from modrwkv.generation.engine import prefill_steps, run_to_end
from modrwkv.inference import ModRWKVPipeline
from modrwkv.lm import RWKV7, RWKV7Config, RWKV7State, build_lm, load_model
from modrwkv.lm.model import INITIAL_STATE_NAME
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.multimodal import ModRWKV
from modrwkv.processing import IGNORE_INDEX
from modrwkv.tokenizer import WorldTokenizer
from modrwkv.training import ConfigError, build_model, config_from_dict, train

from test_training import colour_samples, config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = RWKV7Config(**yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())["model"]["lm"]["config"])


def random_lm(config: RWKV7Config = TINY, dtype: torch.dtype = torch.float32, seed: int = 1) -> RWKV7:
    """Random weights everywhere: a fresh RWKV-LM init zeroes the output projections, through which
    the state would have no effect at all."""
    return build_lm(random_official_state_dict(config, seed=seed), dtype=dtype)


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lm") / "tiny-world.pth"
    torch.save(random_official_state_dict(TINY, seed=1), path)
    return str(path)


@pytest.fixture(scope="module")
def state_run(tmp_path_factory, lm_checkpoint):
    """A ModRWKV (random LM, trainable tiny vision encoder, fresh adapter) state-tuned 3 steps on
    images; returns (weights before, the run's result)."""
    tmp = tmp_path_factory.mktemp("state")
    cfg = config(tmp, "run", stage="state", max_steps=3, lr=0.05, warmup_steps=0)
    cfg["model"]["lm"] = {"checkpoint": lm_checkpoint}
    model = build_model(config_from_dict(cfg, needs_data=False).model, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    return before, train(cfg, samples=colour_samples(16), model=model)


# --- gradients --------------------------------------------------------------------------------


def test_initial_state_gradient_matches_the_per_token_recurrence_and_finite_differences():
    lm = random_lm(RWKV7Config(n_layer=2, n_embd=64, vocab_size=300, dim_w=8, dim_a=8, dim_v=8, dim_g=8),
                   dtype=torch.float64)
    lm.set_initial_state(0.3 * torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
    wkv = lm.enable_state_tuning()
    ids = torch.randint(0, 300, (2, 45), generator=torch.Generator().manual_seed(1))

    def loss() -> torch.Tensor:
        logits = lm(ids).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())

    grads = {}
    for impl in ("chunked", "recurrent"):  # training's form (45 tokens: two chunks) and the reference
        lm.wkv_impl = impl
        grads[impl] = torch.autograd.grad(loss(), wkv)[0]
    assert grads["chunked"].abs().max() > 1e-4  # the state matters to the loss in every layer
    assert all(layer.abs().max() > 0 for layer in grads["chunked"])
    torch.testing.assert_close(grads["chunked"], grads["recurrent"], rtol=1e-9, atol=1e-12)

    # Finite differences in the last layer: below it, a change of the state reaches the next layers'
    # decays, which the model computes in fp32 whatever its dtype, and that rounding (~1e-8 in the
    # loss) swamps a small step. The state is fp32 too: a power-of-two step shifts it exactly.
    lm.wkv_impl = "chunked"
    eps = 2.0**-16
    with torch.no_grad():
        for index in [(1, 0, 3, 5), (1, 0, 60, 2), (1, 0, 7, 7)]:
            wkv[index] += eps
            up = loss().item()
            wkv[index] -= 2 * eps
            down = loss().item()
            wkv[index] += eps
            assert (up - down) / (2 * eps) == pytest.approx(grads["chunked"][index].item(), rel=1e-6, abs=1e-12)


# --- training ---------------------------------------------------------------------------------


@pytest.mark.xdist_group("state_run")  # one xdist worker trains the fixture's run, not both
def test_a_state_tuning_step_changes_the_initial_state_and_nothing_else(state_run):
    before, result = state_run
    after = result.model.state_dict()
    assert set(after) - set(before) == {"lm.initial_wkv"} and set(before) <= set(after)
    for key, value in before.items():  # LM, adapter, the (trainable in other stages) tiny encoder
        assert torch.equal(after[key], value), key
    assert result.model.lm.initial_wkv.abs().max() > 1e-3
    saved = RWKV7State.load(result.final_dir / INITIAL_STATE_NAME, TINY)
    assert saved.nbytes() < 20_000  # 1 layer x 1 head x 64 x 64 fp32 + two zero shift vectors


@pytest.mark.xdist_group("state_run")  # one xdist worker trains the fixture's run, not both
@torch.no_grad()
def test_training_loss_equals_the_engines_token_by_token_loss_from_the_reloaded_state(state_run):
    """Training's path: the whole sequence in the chunked form, from `init_state` in autograd.
    The engine's: `prefill_steps` one position at a time (the per-token recurrence) from the state
    that `from_pretrained` read back from state.safetensors. Media are spliced in both."""
    _, result = state_run
    trained = result.model.eval()
    trained.lm.wkv_impl = "chunked"
    reloaded = ModRWKV.from_pretrained(result.final_dir)
    assert torch.equal(reloaded.lm.initial_wkv, trained.lm.initial_wkv)
    processor, collate = trained.processor(), trained.collator()
    for sample in colour_samples(3, seed=5):
        batch = collate([processor(sample)])
        training_loss = trained.forward_batch(batch).loss.item()
        embeds = reloaded.embed(batch.input_ids, batch.media)
        labels = batch.labels[0]
        state, nll, n = None, 0.0, 0
        for t in range(embeds.shape[1] - 1):
            state, logits = run_to_end(prefill_steps(reloaded.lm, inputs_embeds=embeds[:, t : t + 1], state=state))
            if labels[t + 1] != IGNORE_INDEX:
                nll -= torch.log_softmax(logits[0].double(), dim=-1)[labels[t + 1]].item()
                n += 1
        assert n > 0 and nll / n == pytest.approx(training_loss, abs=2e-5)


@pytest.mark.xdist_group("state_run")  # one xdist worker trains the fixture's run, not both
def test_text_only_lm_state_tuned_saved_and_reloaded_generates_identically(tmp_path, lm_checkpoint):
    """A text LM (no encoders) tuned from the config alone; `load_model` and `ModRWKV.from_pretrained`
    pick the state up, `generate` and the pipeline start from it, and it changes the output."""
    samples = [Sample([Message("user", f"Count to {i}."), Message("assistant", " ".join(map(str, range(1, i + 2))))])
               for i in range(16)]
    cfg = config(tmp_path, "text", stage="state", max_steps=4, lr=0.05, warmup_steps=0)
    cfg["model"] = {"lm": {"checkpoint": lm_checkpoint}, "ctx_len": 64}
    result = train(cfg, samples=samples)
    assert not result.model.encoders and result.model.lm.initial_wkv is not None

    tokenizer, greedy = WorldTokenizer(), SamplingParams(max_new_tokens=12, temperature=0)
    tuned = result.model.lm.eval()
    expected = generate(tuned, tokenizer, "User: Count to 3.", greedy).token_ids
    lm = load_model(result.final_dir)
    assert generate(lm, tokenizer, "User: Count to 3.", greedy).token_ids == expected
    with torch.no_grad():
        ids = torch.tensor([tokenizer.encode("User: Count to 3.")])
        with_state = lm(ids, logits="last").logits
        lm.set_initial_state(None)
        assert (lm(ids, logits="last").logits - with_state).abs().max() > 1e-3  # the state is used

    pipeline = ModRWKVPipeline.from_pretrained(result.final_dir)
    reply = pipeline.chat([{"role": "user", "content": "Count to 3."}], temperature=0, max_new_tokens=12)
    reference = ModRWKVPipeline(result.model).chat([{"role": "user", "content": "Count to 3."}], temperature=0,
                                                   max_new_tokens=12)
    assert reply == reference


# --- loading onto a base model, errors --------------------------------------------------------


@pytest.mark.xdist_group("state_run")  # one xdist worker trains the fixture's run, not both
def test_a_state_file_swaps_onto_the_base_model_by_python_and_cli(state_run, lm_checkpoint, tmp_path, capsys):
    _, result = state_run
    state_file = result.final_dir / INITIAL_STATE_NAME
    base = ModRWKVPipeline.from_pretrained(lm_checkpoint, prefix_cache_bytes=2**20)
    messages = [{"role": "user", "content": "Hello"}]
    plain = base.run(base.encode(messages), base.sampling_params(temperature=0, max_new_tokens=6))
    plain_ids = run_to_end(plain).token_ids
    base.load_initial_state(state_file)  # also drops prefix states read from zeros
    assert len(base.cache) == 0
    tuned_pipeline = ModRWKVPipeline.from_pretrained(lm_checkpoint, initial_state=state_file)
    assert torch.equal(tuned_pipeline.model.lm.initial_wkv, result.model.lm.initial_wkv)
    tuned_ids = run_to_end(base.run(base.encode(messages), base.sampling_params(temperature=0, max_new_tokens=6))).token_ids
    assert tuned_ids == run_to_end(tuned_pipeline.run(tuned_pipeline.encode(messages),
                                                      tuned_pipeline.sampling_params(temperature=0, max_new_tokens=6))).token_ids
    base.load_initial_state(None)
    assert run_to_end(base.run(base.encode(messages), base.sampling_params(temperature=0, max_new_tokens=6))).token_ids == plain_ids

    args = ["generate", "--model", lm_checkpoint, "--prompt", "Hello", "--max-new-tokens", "6", "--temperature", "0"]
    assert main([*args, "--initial-state", str(state_file)]) == 0
    with_state = capsys.readouterr().out
    expected = generate(load_model(lm_checkpoint), WorldTokenizer(), "Hello", SamplingParams(max_new_tokens=6, temperature=0),
                        state=RWKV7State.load(state_file)).text
    assert with_state.strip() == expected.strip()

    other = tmp_path / "two-layer-state.safetensors"
    wide = RWKV7(RWKV7Config(n_layer=2, n_embd=128, vocab_size=300))
    wide.set_initial_state(torch.ones(2, 2, 64, 64))
    wide.save_initial_state(other)
    assert main([*args, "--initial-state", str(other)]) != 0
    err = capsys.readouterr().err
    assert "(2, 1, 2, 64, 64)" in err and "(1, 1, 1, 64, 64)" in err  # both shapes, [L, rows, H, N, N]


def test_bad_states_and_configs_get_clear_errors(tmp_path):
    lm = random_lm()
    with pytest.raises(ValueError, match=r"shape \(1, 2, 64, 64\).*needs \(1, 1, 64, 64\)"):
        lm.set_initial_state(torch.zeros(1, 2, 64, 64))
    with pytest.raises(ValueError, match="no initial state to save"):
        lm.save_initial_state(tmp_path / "none.safetensors")
    prompt_state = lm(torch.tensor([[1, 2, 3]])).state  # after reading text: token-shift vectors set
    prompt_state.save(tmp_path / "prompt.safetensors")
    with pytest.raises(ValueError, match="not an initial state"):
        lm.load_initial_state(tmp_path / "prompt.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        lm.load_initial_state(tmp_path / "junk.safetensors")

    text_only = {"model": {"lm": {"checkpoint": "lm.pth"}}, "train": {"stage": "state"}}
    config_from_dict(text_only, needs_data=False)  # a text LM needs no encoder for state tuning
    with pytest.raises(ConfigError, match="at least one encoder.*only train.stage 'state'"):
        config_from_dict({**text_only, "train": {"stage": "lora"}}, needs_data=False)
    with pytest.raises(ConfigError, match=r"train\.stage: 'prefix' is not one of \['1', '2', 'lora', 'state'\]"):
        config_from_dict({**text_only, "train": {"stage": "prefix"}}, needs_data=False)

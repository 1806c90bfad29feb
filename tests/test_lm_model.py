"""Behaviour of the RWKV-7 model API: batching, padding, state, embeddings input, training switches."""

import pytest
import torch

from conftest import TINY, make_model
from modrwkv.lm import RWKV7, RWKV7Config, RWKV7State
from modrwkv.lm.ops.linear import _split_product


def ids(n, seed=0, vocab=TINY.vocab_size):
    return torch.randint(1, vocab, (n,), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_inputs_embeds_equal_token_ids(tiny_model):
    tokens = ids(20)[None]
    by_ids = tiny_model(tokens)
    by_embeds = tiny_model(inputs_embeds=tiny_model.embed(tokens))
    torch.testing.assert_close(by_embeds.logits, by_ids.logits, rtol=0, atol=0)


@torch.no_grad()
def test_batch_rows_are_independent(tiny_model):
    a, b = ids(30, 1), ids(30, 2)
    batched = tiny_model(torch.stack([a, b]))
    for row, seq in enumerate((a, b)):
        single = tiny_model(seq[None])
        torch.testing.assert_close(batched.logits[row], single.logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.state.wkv[:, row], single.state.wkv[:, 0], atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("side", ["left", "right", "middle"])
def test_padding_never_changes_state(tiny_model, side):
    """Rows of different lengths padded anywhere give the same logits and state as run alone."""
    seqs = [ids(n, seed=n) for n in (5, 40, 17)]
    T = 48
    batch = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    positions = []
    for row, seq in enumerate(seqs):
        n = len(seq)
        if side == "left":
            pos = torch.arange(T - n, T)
        elif side == "right":
            pos = torch.arange(n)
        else:  # scattered holes, e.g. removed tokens inside a sequence
            pos = torch.linspace(0, T - 1, n).round().long()
        batch[row, pos] = seq
        mask[row, pos] = True
        positions.append(pos)
    start = tiny_model(ids(9, 99)[None].expand(3, -1)).state  # a non-zero carried state
    out = tiny_model(batch, attention_mask=mask, state=start)
    last = tiny_model(batch, attention_mask=mask, state=start, logits="last")
    for row, seq in enumerate(seqs):
        alone = tiny_model(seq[None], state=start.select([row]))
        torch.testing.assert_close(out.logits[row, positions[row]], alone.logits[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(last.logits[row], alone.logits[0, -1], atol=1e-4, rtol=1e-4)
        for have, want in zip(
            (out.state.att_shift, out.state.wkv, out.state.ffn_shift),
            (alone.state.att_shift, alone.state.wkv, alone.state.ffn_shift),
        ):
            torch.testing.assert_close(have[:, row], want[:, 0], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_fully_padded_row_keeps_its_state(tiny_model):
    start = tiny_model(ids(6)[None].expand(2, -1)).state
    mask = torch.tensor([[True] * 4, [False] * 4])
    out = tiny_model(ids(4, 5)[None].expand(2, -1), state=start, attention_mask=mask)
    torch.testing.assert_close(out.state.wkv[:, 1], start.wkv[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(out.state.att_shift[:, 1], start.att_shift[:, 1], rtol=0, atol=0)


@torch.no_grad()
def test_chunked_and_recurrent_model_paths_agree(tiny_model):
    tokens = ids(70)[None]
    tiny_model.wkv_impl = "recurrent"
    slow = tiny_model(tokens)
    tiny_model.wkv_impl = "chunked"
    fast = tiny_model(tokens)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=1e-4)


def test_model_gradients_chunked_equal_recurrent():
    model = make_model().double().train()
    tokens = ids(40)[None]
    grads = {}
    for impl in ("recurrent", "chunked"):
        model.zero_grad()
        model.wkv_impl = impl
        model(tokens).logits.logsumexp(-1).mean().backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, g in grads["recurrent"].items():
        torch.testing.assert_close(grads["chunked"][name], g, rtol=1e-7, atol=1e-9, msg=name)


def test_gradient_checkpointing_gives_same_gradients():
    model = make_model().train()
    tokens = ids(33)[None]
    results = []
    for enabled in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = enabled
        model(tokens).logits.logsumexp(-1).mean().backward()
        results.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in results[0].items():
        torch.testing.assert_close(results[1][name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_fresh_model_initialisation_trains():
    """RWKV-LM-style init: finite outputs and a loss that falls on a memorisation task."""
    torch.manual_seed(0)
    model = RWKV7(RWKV7Config(n_layer=2, n_embd=64, vocab_size=50, dim_w=32, dim_a=32, dim_v=32, dim_g=32))
    data = torch.randint(1, 50, (4, 24))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits = model(data[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]


@torch.no_grad()
def test_bf16_weights_keep_fp32_state():
    model = make_model(dtype=torch.bfloat16)
    out = model(ids(20)[None])
    assert out.logits.dtype == torch.bfloat16
    assert out.state.wkv.dtype == torch.float32 and out.state.att_shift.dtype == torch.bfloat16
    ref = make_model()(ids(20)[None]).logits
    assert (out.logits.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_bf16_autocast_trains_like_fp32():
    """Lightning's "bf16-mixed" runs the fp32 model under autocast: linear outputs turn bf16 while
    parameters stay fp32, so every op mixing them must accept both (torch.lerp did not)."""
    model = make_model()
    model.use_weight_layout("training")
    model.requires_grad_(True)
    tokens = ids(40).view(2, 20)
    reference = model(tokens).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens).logits
    logits.float().logsumexp(-1).mean().backward()
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.1 * reference.abs().max()  # as for bf16 weights
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@torch.no_grad()
def test_state_save_load_clone_select_cat(tiny_model, tmp_path):
    state = tiny_model(torch.stack([ids(10, 1), ids(10, 2)])).state
    path = tmp_path / "s.safetensors"
    state.save(path)
    loaded = RWKV7State.load(path, TINY)
    for a, b in zip((state.att_shift, state.wkv, state.ffn_shift), (loaded.att_shift, loaded.wkv, loaded.ffn_shift)):
        assert torch.equal(a, b)
    clone = state.clone()
    clone.wkv.zero_()
    assert state.wkv.abs().sum() > 0
    joined = RWKV7State.cat([state.select([1]), state.select([0])])
    assert torch.equal(joined.wkv[:, 0], state.wkv[:, 1]) and torch.equal(joined.wkv[:, 1], state.wkv[:, 0])
    assert state.select([0]).expand(3).batch_size == 3
    assert state.nbytes() == 2 * 4 * TINY.state_numel()
    (tmp_path / "junk").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="junk: cannot read as safetensors"):
        RWKV7State.load(tmp_path / "junk")
    other = RWKV7Config(n_layer=2, n_embd=128)
    with pytest.raises(ValueError, match="needs"):
        RWKV7State.load(path, other)


@torch.no_grad()
def test_input_errors_are_clear(tiny_model):
    with pytest.raises(ValueError, match="exactly one"):
        tiny_model()
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 1024\)"):
        tiny_model(torch.tensor([[5, 1024]]))
    with pytest.raises(ValueError, match="inputs_embeds must be"):
        tiny_model(inputs_embeds=torch.zeros(1, 3, 7))
    with pytest.raises(ValueError, match="state has batch size 1"):
        tiny_model(torch.tensor([[1], [2]]), state=tiny_model.init_state(1))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        tiny_model(torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="logits must be"):
        tiny_model(torch.tensor([[1]]), logits="first")
    with pytest.raises(ValueError, match="empty sequence"):
        tiny_model(torch.zeros(1, 0, dtype=torch.long))


def test_config_from_state_dict_reads_every_size():
    from modrwkv.lm.random_weights import random_official_state_dict

    cfg = RWKV7Config(n_layer=2, n_embd=192, vocab_size=300, head_size=64, dim_w=64, dim_a=96, dim_v=32, dim_g=128, dim_ffn=500)
    assert RWKV7Config.from_state_dict(random_official_state_dict(cfg)) == cfg
    assert RWKV7Config(n_layer=12, n_embd=768).dim_w == 64  # RWKV-LM's default LoRA widths for 0.1B
    assert RWKV7Config(n_layer=24, n_embd=2048).dim_g == 256
    with pytest.raises(ValueError, match="missing key"):
        RWKV7Config.from_state_dict({"emb.weight": torch.zeros(2, 2)})


def linear_weights(model):
    return {n: m.weight for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_weight_layouts_change_memory_order_only(tiny_model):
    """"decode" stores every linear weight as a contiguous [in, out] matrix, "training" row-major;
    state_dict keys and values never change, and both layouts compute the same logits."""
    tokens = ids(12)[None]
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for layout in ("training", "decode", "training"):
        tiny_model.use_weight_layout(layout)
        for name, w in linear_weights(tiny_model).items():
            assert (w.t() if layout == "decode" else w).is_contiguous(), (layout, name)
        after = tiny_model.state_dict()
        assert list(after) == list(before)
        for key, value in before.items():
            assert torch.equal(after[key], value), key
    with torch.no_grad():
        want = tiny_model(tokens).logits  # training layout
        tiny_model.use_weight_layout("decode")
        got = tiny_model(tokens).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown weight layout 'fast'"):
        tiny_model.use_weight_layout("fast")


def test_training_layout_restores_row_major_gradients():
    """Switching back for training: same gradients, laid out row-major like the weights."""
    model = make_model().train()
    tokens = ids(20)[None]
    grads = {}
    for layout in ("decode", "training"):
        model.use_weight_layout(layout)
        model.zero_grad(set_to_none=True)
        model(tokens).logits.logsumexp(-1).mean().backward()
        grads[layout] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, w in linear_weights(model).items():
        assert w.grad.is_contiguous(), name
    for name, g in grads["training"].items():
        torch.testing.assert_close(grads["decode"][name], g, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("splits", [2, 4])
def test_split_linear_equals_the_layer(splits):
    """One row: split products over the threads (column-major weights only); several rows without
    autograd: oneDNN; either way x @ W^T."""
    from modrwkv.lm.ops.linear import ONEDNN, linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 96, bias=False)
    x = torch.randn(1, 1, 64)
    want = x @ layer.weight.detach().t()
    # row-major weight: the layer itself runs (no split)
    assert torch.equal(linear(layer, x, splits), layer(x))
    layer.weight.data = layer.weight.data.t().contiguous().t()  # the "decode" layout
    got = linear(layer, x, splits)
    assert got.shape == (1, 1, 96)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # several rows, a non-contiguous input (every other row) among them
    xs = torch.randn(6, 1, 64)
    with torch.no_grad():
        for rows in (xs, xs[::2]):
            torch.testing.assert_close(linear(layer, rows, splits), rows @ layer.weight.t(), rtol=1e-5, atol=1e-5)
    assert ONEDNN  # the CPU builds of torch this project installs have oneDNN
    # layers that must be called as they are: a bias, an input size the splits do not divide
    biased = torch.nn.Linear(64, 8)
    assert torch.equal(linear(biased, x, splits), biased(x))
    odd = torch.nn.Linear(66, 8, bias=False)
    odd.weight.data = odd.weight.data.t().contiguous().t()
    x66 = torch.randn(1, 1, 66)
    torch.testing.assert_close(linear(odd, x66, 4), x66 @ odd.weight.detach().t())


@torch.no_grad()
@pytest.mark.parametrize("threads", [1, 4])
def test_decode_steps_equal_one_pass(monkeypatch, threads):
    """Token-by-token decoding (split products when there are threads, WKV state written in place
    without autograd) gives the logits and final state of one pass over the sequence, and never
    modifies the state it was given."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # the model splits by this count
    model = make_model()
    rows = torch.stack([ids(9, 1), ids(9, 2)])
    want = model(rows)
    state, logits = model.init_state(2), []
    for t in range(rows.shape[1]):
        start = state.clone()
        out = model(rows[:, t : t + 1], state=state, logits="last")
        for have, before in zip((state.att_shift, state.wkv, state.ffn_shift), (start.att_shift, start.wkv, start.ffn_shift)):
            assert torch.equal(have, before)
        state = out.state
        logits.append(out.logits)
    torch.testing.assert_close(torch.stack(logits, 1), want.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.wkv, want.state.wkv, rtol=1e-4, atol=1e-5)
    with torch.enable_grad():  # the autograd path gathers the states instead of writing them in place
        step = model(rows[:, :1], state=want.state, logits="last")
    no_grad = model(rows[:, :1], state=want.state, logits="last")  # products of 2 rows: oneDNN, not MKL
    torch.testing.assert_close(step.state.wkv.detach(), no_grad.state.wkv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(step.logits.detach(), no_grad.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("splits", [2, 3, 4])
def test_split_product_equals_the_plain_product(splits):
    """A one-row product as `splits` partial products over slices of the input dimension (decoding on
    CPUs where MKL runs a one-row product on one core) equals x @ W^T; a row-major weight, or an
    input dimension the split does not divide, takes the plain product."""
    torch.manual_seed(0)
    w, x = torch.randn(40, 96), torch.randn(1, 1, 96)
    column_major = w.t().contiguous().t()
    want = x @ w.t()
    got = _split_product(column_major, x, splits)
    assert got.shape == (1, 1, 40)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_split_product(w, x, splits), want, rtol=1e-5, atol=1e-5)
    odd = torch.randn(40, 97).t().contiguous().t()
    torch.testing.assert_close(_split_product(odd, x.new_ones(1, 1, 97), 2), x.new_ones(1, 1, 97) @ odd.t(),
                               rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("weight_format, tol", [("native", 1e-5), ("bf16", 3e-2), ("int8", 3e-2)])
def test_fast_decode_equals_the_modules(monkeypatch, weight_format, tol):
    """A one-token step without autograd runs `ops.decode.decode_blocks` (counted here), which gives
    the logits, hidden states and new state of the modules (`fast_decode = False`), at batch 1 and
    2, from a carried state with a tuned initial state, and leaves the given state unchanged. bf16
    and int8 round their products' inputs to bf16, where a difference of one fp32 rounding can move
    one value by a bf16 step, hence their looser tolerance."""
    import modrwkv.lm.model as model_module

    calls = []
    fast = model_module.decode_blocks
    monkeypatch.setattr(model_module, "decode_blocks", lambda *a: calls.append(1) or fast(*a))
    model = make_model(seed=3)
    model.set_initial_state(torch.randn(TINY.n_layer, TINY.n_head, TINY.head_size, TINY.head_size) * 0.1)
    model.use_weight_format(weight_format)
    for batch in (1, 2):
        rows = torch.stack([ids(12, seed) for seed in range(batch)])
        state = model(rows).state
        before = state.clone()
        for fast_decode in (True, False):
            model.fast_decode = fast_decode
            out = model(rows[:, :1], state=state, logits="last")
            if fast_decode:
                want = out
        assert len(calls) == batch  # one fast step per batch size; the reference did not call it
        torch.testing.assert_close(want.logits, out.logits, rtol=tol, atol=tol)
        torch.testing.assert_close(want.hidden, out.hidden, rtol=tol, atol=tol)
        for have, ref in zip((want.state.att_shift, want.state.wkv, want.state.ffn_shift),
                             (out.state.att_shift, out.state.wkv, out.state.ffn_shift)):
            torch.testing.assert_close(have, ref, rtol=tol, atol=tol)
        for have, ref in zip((state.att_shift, state.wkv, state.ffn_shift), (before.att_shift, before.wkv, before.ffn_shift)):
            assert torch.equal(have, ref)
        model.fast_decode = True

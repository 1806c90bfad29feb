"""The Hugging Face Hub and transformers: hub ids from a local cache laid out by the test (offline,
nothing downloads), model cards, `push_to_hub` against a fake hub, and transformers' Auto classes
on a saved folder (registered classes, and remote code in a fresh process)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_model
from test_pipeline import GREEDY, LM, tiny_model_dir, tiny_pipeline

from modrwkv.cli import main
from modrwkv.generation import TextStream
from modrwkv.hub import HubModelNotFoundError, resolve_model_path
from modrwkv.inference import ModRWKVPipeline
from modrwkv.multimodal import ModRWKV

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def publish(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT, ref: str = "main") -> Path:
    """Lays out `folder` as the hub cache does: models--org--name/{refs/REF, snapshots/COMMIT/}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    if not snapshot.exists():
        shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_ids_resolve_from_the_local_cache_with_revisions(hub_cache):
    snapshot = publish(hub_cache, "acme/tiny", tiny_model_dir())
    publish(hub_cache, "acme/tiny", tiny_model_dir(), ref="v1")
    assert resolve_model_path("acme/tiny") == snapshot
    assert resolve_model_path("acme/tiny@v1") == snapshot
    assert resolve_model_path(f"acme/tiny@{COMMIT}") == snapshot
    assert resolve_model_path(tiny_model_dir()) == tiny_model_dir()  # local paths pass through
    with pytest.raises(HubModelNotFoundError, match=r"acme/absent: .*not in .*offline"):
        resolve_model_path("acme/absent")
    with pytest.raises(HubModelNotFoundError, match=r"acme/tiny@v9"):
        resolve_model_path("acme/tiny@v9")


def test_pipeline_and_cli_load_a_hub_id(hub_cache, capsys):
    publish(hub_cache, "acme/tiny", tiny_model_dir())
    pipe = ModRWKVPipeline.from_pretrained("acme/tiny", prefix_cache_bytes=0)
    assert pipe.chat("Hello", **GREEDY) == tiny_pipeline().chat("Hello", **GREEDY)
    assert main(["chat", "--model", "acme/nothing-here"]) == 2
    err = capsys.readouterr().err
    assert "acme/nothing-here" in err and "Traceback" not in err


def test_save_pretrained_writes_hf_fields_and_a_model_card(tmp_path):
    model = tiny_pipeline().model
    summary = {"task": "pope", "title": "POPE", "split": "test", "samples": 30, "limit": None,
               "headline": {"label": "F1", "value": 0.8125}, "server_scored": False}
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "summary.json").write_text(json.dumps(summary))
    training = {"train": {"stage": 2, "lr": 2e-5}, "data": {"path": "llava.json"}}
    model.save_pretrained(tmp_path / "m", training_config=training, eval_results=[eval_dir])
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "modrwkv" and config["architectures"] == ["ModRWKVForCausalLM"]
    card = (tmp_path / "m" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "modrwkv" and front["pipeline_tag"] == "image-text-to-text"
    assert "RWKV-7, 2 layers, width 64" in card
    assert "| image | tiny |" in card and "| audio | whisper |" in card and "| series | wavenet |" in card
    assert "stage: 2" in card and "lr: 2.0e-05" in card
    assert "| POPE | test | F1 | 0.812 | 30 |" in card  # as report.md shows it (format_metric)
    again = ModRWKV.from_pretrained(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


class FakeHub:
    """The part of huggingface_hub.HfApi that push_to_hub uses; a commit lands in the local cache."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.calls = cache, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, branch, **kwargs):
        self.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, repo_id, folder_path, revision=None, **kwargs):
        self.calls.append(("upload_folder", repo_id, revision))
        publish(self.cache, repo_id, Path(folder_path), commit="f" * 40, ref=revision or "main")
        return f"https://huggingface.co/{repo_id}/commit/{'f' * 40}"


def test_push_to_hub_uploads_a_loadable_folder(hub_cache):
    model = tiny_pipeline().model
    hub = FakeHub(hub_cache)
    url = model.push_to_hub("acme/pushed", api=hub, private=True, revision="v2",
                            eval_results=[{"task": "gqa", "title": "GQA", "split": "testdev", "samples": 5,
                                           "headline": {"label": "accuracy", "value": 0.4}}])
    assert url.endswith("f" * 40)
    assert hub.calls[0] == ("create_repo", "acme/pushed", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert ("upload_folder", "acme/pushed", "v2") in hub.calls
    loaded = ModRWKV.from_pretrained("acme/pushed@v2")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    card = (resolve_model_path("acme/pushed@v2") / "README.md").read_text()
    assert 'ModRWKVPipeline.from_pretrained("acme/pushed")' in card and "| GQA | testdev |" in card
    with pytest.raises(ValueError, match="org/name"):
        model.push_to_hub("not a repo id", api=hub)


def test_transformers_auto_classes_and_generate():
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor

    import modrwkv.hf_integration  # noqa: F401 -- registers the classes

    folder = tiny_model_dir()
    assert AutoConfig.from_pretrained(folder).model_type == "modrwkv"
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(AutoModel.from_pretrained(folder)).__name__ == "ModRWKVForCausalLM"
    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor("Hello there")
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    text = processor.decode(out[0, inputs["input_ids"].shape[1]:])
    assert text.strip() == tiny_pipeline().chat("Hello there", **GREEDY)
    # a reply ends with the chat format's end-of-turn token, which skip_special_tokens drops
    reply = [*processor.tokenizer.encode(" Paris"), 24]
    assert (processor.decode(reply), processor.decode(reply, skip_special_tokens=True)) == (" Paris\x17", " Paris")
    # the state-carrying generation equals re-reading the whole sequence at every step
    ids = inputs["input_ids"]
    for _ in range(3):
        ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(ids, out[:, : ids.shape[1]])
    # labels give the mean next-token loss, as transformers models do
    loss = model(input_ids=out, labels=out).loss
    logits = model(input_ids=out).logits
    expected = torch.nn.functional.cross_entropy(logits[0, :-1], out[0, 1:])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_transformers_generate_and_the_pipeline_refuse_the_same_tokens():
    """Greedy decoding through transformers' generate() gives the pipeline's tokens also where the
    model's favourites are ids no reply may contain: end of text, and the worldrwkv format's media
    tokens (a special token, the image placeholder)."""
    from modrwkv.hf_integration import ModRWKVConfig, ModRWKVForCausalLM

    lm = make_model(LM, seed=2)
    favourites = [0, 65530, 65531, 65532]  # end of text, <|vision_start|>, <|vision_end|>, <|image_pad|>
    with torch.no_grad():  # the final hidden state always lies ~20 along u, so these rows win every step
        u = torch.nn.functional.normalize(torch.randn(LM.n_embd, generator=torch.Generator().manual_seed(0)), dim=0)
        lm.ln_out.bias += 20 * u
        for rank, token in enumerate(favourites):
            lm.head.weight[token] = (4.0 - 0.2 * rank) * u
    model = ModRWKV(lm, {}, {}, template="worldrwkv", ctx_len=None).eval()
    pipeline = ModRWKVPipeline(model)
    hf = ModRWKVForCausalLM(ModRWKVConfig(vocab_size=LM.vocab_size), model)
    prompt = pipeline.encode("Hello there")
    ids = torch.tensor([prompt.ids])
    assert hf(input_ids=ids).logits[0, -1].topk(4).indices.tolist() == favourites
    stream = TextStream(pipeline.run(prompt, pipeline.sampling_params(temperature=0, max_new_tokens=8)))
    "".join(stream)
    out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert out[0, ids.shape[1]:].tolist() == stream.result.token_ids
    assert not set(stream.result.token_ids) & set(favourites)


def test_transformers_remote_code_without_importing_modrwkv(tmp_path):
    folder = tiny_model_dir()
    script = (
        "import sys\n"
        "from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor\n"
        f"folder = {str(folder)!r}\n"
        "config = AutoConfig.from_pretrained(folder, trust_remote_code=True)\n"
        "model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)\n"
        "processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)\n"
        "inputs = processor('Hello there')\n"
        "out = model.generate(**inputs, max_new_tokens=8, do_sample=False)\n"
        "print(type(config).__name__, type(model).__name__)\n"
        "print(repr(processor.decode(out[0, inputs['input_ids'].shape[1]:]).strip()))\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "ModRWKVConfig ModRWKVForCausalLM"
    assert lines[-1] == repr(tiny_pipeline().chat("Hello there", **GREEDY))


def test_training_runs_put_their_config_in_the_card_and_push_to_hub_cli(hub_cache, tmp_path, monkeypatch, capsys):
    from modrwkv.training.checkpoint import PretrainedCheckpoint, export_model

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  stage: 1\n  lr: 0.001\n")
    callback = PretrainedCheckpoint(run, save_every=0, keep_last=1, total_steps=1, lora=None)
    export_model(tiny_pipeline().model, run / "final", None, callback.run_config())
    assert "stage: 1" in (run / "final" / "README.md").read_text()
    # the CLI, with the hub client replaced by the fake (nothing leaves the machine)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: FakeHub(hub_cache))
    eval_dir = tmp_path / "pope"
    eval_dir.mkdir()
    (eval_dir / "summary.json").write_text(json.dumps({"task": "pope", "title": "POPE", "split": "test", "samples": 9,
                                                       "headline": {"label": "F1", "value": 0.5}}))
    assert main(["push-to-hub", "--model", str(run / "final"), "--repo", "acme/cli", "--eval", str(eval_dir),
                 "--training-config", str(run / "config.yaml")]) == 0
    assert "pushed" in capsys.readouterr().out
    card = (resolve_model_path("acme/cli") / "README.md").read_text()
    assert "| POPE | test | F1 | 0.500 | 9 |" in card and "stage: 1" in card
    assert main(["push-to-hub", "--model", str(run / "final"), "--repo", "acme/cli", "--eval", str(tmp_path)]) == 2
    assert "no eval summary" in capsys.readouterr().err


def test_push_to_hub_without_network_is_one_line(hub_cache, tmp_path, monkeypatch, capsys):
    """With no network the hub client raises its own ConnectError, which is not an OSError: `modrwkv
    push-to-hub` ended in a traceback. It is now one line naming the repository and the cause."""
    httpx = pytest.importorskip("httpx2") if importlib.util.find_spec("httpx2") else pytest.importorskip("httpx")
    import huggingface_hub

    class OfflineHub(FakeHub):
        def create_repo(self, repo_id, **kwargs):
            raise httpx.ConnectError("[Errno -2] Name or service not known")

    tiny_pipeline().model.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: OfflineHub(hub_cache))
    assert main(["push-to-hub", "--model", str(tmp_path / "m"), "--repo", "acme/offline"]) == 2
    err = capsys.readouterr().err  # (after the progress bars of loading the model)
    assert "Traceback" not in err
    assert err.endswith("\nmodrwkv push-to-hub: error: could not reach the Hugging Face Hub to push to acme/offline "
                        "(ConnectError: [Errno -2] Name or service not known); check the network (or HF_ENDPOINT / "
                        "the proxy settings) and run the same command again\n")


def test_eval_cli_resolves_a_hub_id_once(hub_cache, tmp_path, monkeypatch):
    """`modrwkv eval --model org/name` looks the id up once: the recorded model and the pipeline
    it loads share the one local snapshot path."""
    import huggingface_hub
    from eval_fixtures import write_gqa

    snapshot = publish(hub_cache, "acme/tiny", tiny_model_dir())
    calls = []
    real = huggingface_hub.snapshot_download

    def counting(repo_id, **kwargs):
        calls.append(repo_id)
        return real(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", counting)
    data = write_gqa(tmp_path, [("What color is the car?", "red", 1)])
    assert main(["eval", "--model", "acme/tiny", "--task", "gqa", "--data", str(data), "--output",
                 str(tmp_path / "out"), "--max-new-tokens", "2", "--no-progress"]) == 0
    assert calls == ["acme/tiny"]
    assert (tmp_path / "out" / "predictions.jsonl").read_text().count("\n") == 1
    assert str(snapshot) in (tmp_path / "out" / "summary.json").read_text()

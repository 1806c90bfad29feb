"""How the evaluation harnesses find and drive modrwkv: lmms-eval's `lmms_eval.models` entry point and
its rank / world size under accelerate; VLMEvalKit's `BaseModel` and multi-turn `chat`. Neither
harness is a test dependency (lmms-eval 0.7.3 pulls in 2.5 GB, and a CUDA torchvision): their few
names modrwkv touches are faked, as lmms-eval / VLMEvalKit define them
(lmms_eval/models/registry_v2.py; vlmeval/vlm/base.py). Where lmms-eval is installed, the last test
runs its real command line over bench/digits/lmms_eval_task and compares with `modrwkv eval`."""

import dataclasses
import importlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from test_pipeline import GREEDY, image, tiny_model_dir, tiny_pipeline
from PIL import Image

import modrwkv.evaluation.harness.lmms_eval as lmms_adapter
from modrwkv.cli import main
from modrwkv.evaluation.harness.lmms_eval import ModRWKVLmmsCore

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_lmms_eval_entry_point_gives_a_manifest_of_a_loadable_lmms_class(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class ModelManifest:  # lmms_eval.models.registry_v2.ModelManifest's fields
        model_id: str
        simple_class_path: str | None = None
        chat_class_path: str | None = None
        aliases: tuple[str, ...] = ()

    class lmms:  # lmms_eval.api.model.lmms, as far as modrwkv's class needs it
        def __init__(self) -> None:
            self._rank, self._world_size = 0, 1

    fakes = {name: types.ModuleType(name) for name in (
        "lmms_eval", "lmms_eval.models", "lmms_eval.models.registry_v2", "lmms_eval.api", "lmms_eval.api.model")}
    fakes["lmms_eval.models.registry_v2"].ModelManifest = ModelManifest
    fakes["lmms_eval.api.model"].lmms = lmms
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "modrwkv.evaluation.harness.models.modrwkv", raising=False)
    # what lmms-eval does with the entry point: load "module:attr", call it, resolve the class path
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["lmms_eval.models"]
    module_name, attr = entry["modrwkv"].split(":")
    manifest = getattr(importlib.import_module(module_name), attr)()
    assert manifest.model_id == "modrwkv" and manifest.chat_class_path is None
    module_path, class_name = manifest.simple_class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_path), class_name)
    assert issubclass(cls, lmms) and issubclass(cls, ModRWKVLmmsCore)
    assert getattr(cls, "is_simple", True)  # a "simple" model: lmms-eval checks this flag


def test_lmms_eval_model_takes_its_rank_and_gpu_under_accelerate(monkeypatch):
    class PartialState:  # accelerate's view of `accelerate launch --num_processes 4`, process 2
        process_index, num_processes, local_process_index = 2, 4, 2

    class Accelerator:
        pass

    pipeline = tiny_pipeline()  # built (importing transformers) before accelerate is faked
    fake = types.ModuleType("accelerate")
    fake.__spec__ = importlib.machinery.ModuleSpec("accelerate", None)
    fake.PartialState, fake.Accelerator = PartialState, Accelerator
    monkeypatch.setitem(sys.modules, "accelerate", fake)
    loaded = {}
    monkeypatch.setattr(lmms_adapter, "load_pipeline", lambda path, **options: loaded.update(options) or pipeline)
    model = ModRWKVLmmsCore(pretrained="some/model", device="cuda")
    assert (model.rank, model.world_size) == (2, 4)
    assert loaded["device"] == "cuda:2" and isinstance(model.accelerator, Accelerator)
    # without accelerate, the launcher's environment variables (torchrun sets the same ones)
    monkeypatch.setitem(sys.modules, "accelerate", None)
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    single = ModRWKVLmmsCore(pipeline=pipeline)
    assert (single.rank, single.world_size) == (0, 1) and not hasattr(single, "accelerator")


@pytest.fixture
def vlmevalkit_with_base(monkeypatch):
    """The adapter module imported afresh while `vlmeval.vlm.base.BaseModel` exists."""

    class BaseModel:  # vlmeval.vlm.base.BaseModel's constructor and flags
        INTERLEAVE = False
        allowed_types = ["text", "image"]

        def __init__(self) -> None:
            self.dump_image_func = None

    base = types.ModuleType("vlmeval.vlm.base")
    base.BaseModel = BaseModel
    for name, module in (("vlmeval", types.ModuleType("vlmeval")), ("vlmeval.vlm", types.ModuleType("vlmeval.vlm")),
                         ("vlmeval.vlm.base", base)):
        monkeypatch.setitem(sys.modules, name, module)
    import modrwkv.evaluation.harness.vlmevalkit as original

    spec = importlib.util.spec_from_file_location("modrwkv.evaluation.harness._vlmevalkit_probe", original.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, BaseModel


def test_vlmevalkit_model_is_a_base_model_with_multi_turn_chat(vlmevalkit_with_base, tmp_path):
    module, BaseModel = vlmevalkit_with_base
    model = module.ModRWKVVLM(pipeline=tiny_pipeline(), max_new_tokens=GREEDY["max_new_tokens"])
    assert isinstance(model, BaseModel) and model.dump_image_func is None
    picture = tmp_path / "shapes.png"
    Image.fromarray(image(3)).save(picture)
    messages = [
        {"role": "user", "content": [{"type": "image", "value": str(picture)}, {"type": "text", "value": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "value": "A square."}]},
        {"role": "user", "content": "What colour is it?"},
    ]
    expected = tiny_pipeline().chat([
        {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": "A square."},
        {"role": "user", "content": "What colour is it?"},
    ], images=[str(picture)], **GREEDY).strip()
    assert model.chat(messages) == expected
    with pytest.raises(ValueError, match="must end with a user message"):
        model.chat(messages[:2])
    with pytest.raises(ValueError, match="role of system, user or assistant"):
        model.chat([{"role": "robot", "content": "hi"}])


def test_vlmevalkit_chat_lays_out_every_turns_leading_images_as_the_prompt_builder(tmp_path, monkeypatch):
    """VLMEvalKit's multi-turn chat sends a user turn as [image, ..., text], as `generate` gets a question:
    each turn's leading images go where the model's media_layout puts them (question first here), as the
    prompt builder lays out a one-turn prompt of that turn and as `generate` lays out the same parts; chat
    kept their markers in front of the text whatever the layout. Compared as the prompt's token ids."""
    from modrwkv.evaluation.harness.vlmevalkit import ModRWKVVLM
    from modrwkv.inference.prompt import build_sample

    pipeline = tiny_pipeline()
    monkeypatch.setattr(pipeline.processor, "media_layout", "text_media_text")
    pictures = [str(tmp_path / f"{index}.png") for index in range(3)]
    for index, picture in enumerate(pictures):
        Image.fromarray(image(index)).save(picture)
    asked = []  # (messages, images) of each request
    monkeypatch.setattr(pipeline, "chat", lambda messages, **options: asked.append((messages, options["images"])) or "")
    model = ModRWKVVLM(pipeline=pipeline)

    def parts(paths: list[str], text: str) -> list[dict[str, str]]:
        return [*({"type": "image", "value": path} for path in paths), {"type": "text", "value": text}]

    model.chat([{"role": "user", "content": parts(pictures[:1], "What is it?")},
                {"role": "assistant", "content": "A square."},
                {"role": "user", "content": parts(pictures[1:], "And these two?")}])
    model.generate(parts(pictures[1:], "And these two?"))
    (conversation, images), (question, question_images) = asked
    # the builder's layout of each turn by itself (unmarked images, as a benchmark question is asked)
    first, last = (build_sample(text, images=paths, media_layout="text_media_text").messages[0].content
                   for text, paths in (("What is it?", pictures[:1]), ("And these two?", pictures[1:])))
    assert (first, last) == ("What is it?\n<image>\nWhat is it?", "And these two?\n<image>\n<image>\nAnd these two?")
    expected = pipeline.encode([{"role": "user", "content": first}, {"role": "assistant", "content": "A square."},
                                {"role": "user", "content": last}], images=pictures)
    assert images == pictures and pipeline.encode(conversation, images=images).ids == expected.ids
    assert pipeline.encode(question, images=question_images).ids == pipeline.encode(last, images=pictures[1:]).ids


# docs/evaluation.md, "lmms-eval": lmms-eval 0.7.3 leaves filelock unpinned but needs 3.x, and
# PyPI's torchvision is a CUDA build that fails to import beside torch's CPU build (uninstall it).
LMMS_EVAL_INSTALL = 'pip install lmms-eval==0.7.3 "filelock<4" torch==2.13.0 && pip uninstall -y torchvision'


def test_real_lmms_eval_scores_the_replies_modrwkv_eval_gives(tmp_path, monkeypatch):
    """lmms-eval's own command line over the shipped digits task (its YAML, its image reader, the
    entry point, `--model_args` parsing, its exact match) gives each record the reply and the score
    `modrwkv eval --task custom` gives the same records (a random model: replies of up to 17 tokens
    that must match to the character)."""
    if importlib.util.find_spec("lmms_eval") is None:
        pytest.skip(f"lmms-eval is not installed; to run this test: {LMMS_EVAL_INSTALL}")
    monkeypatch.chdir(tmp_path)  # the task reads data/digits/test.jsonl from the working directory
    data = tmp_path / "data" / "digits"
    (data / "images").mkdir(parents=True)
    records = []
    for index in range(4):
        Image.fromarray(image(index, size=(8, 8))[..., 0], mode="L").save(data / "images" / f"{index}.png")
        records.append({"id": str(index), "image": f"images/{index}.png", "question": "Which digit is this?",
                        "answer": str(index)})
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "--model", "modrwkv", "--model_args", f"pretrained={tiny_model_dir()}",
         "--tasks", "modrwkv_digits", "--include_path", str(ROOT / "bench" / "digits" / "lmms_eval_task"),
         "--batch_size", "3", "--log_samples", "--output_path", str(tmp_path / "lmms")],
        env=env, capture_output=True, text=True, timeout=600)
    samples = next((tmp_path / "lmms").rglob("*_samples_modrwkv_digits.jsonl"), None)
    assert samples is not None, done.stdout[-3000:] + done.stderr[-3000:]  # lmms-eval exits 0 on errors
    harness = {json.loads(line)["doc_id"]: json.loads(line) for line in samples.read_text().splitlines()}
    [results] = (tmp_path / "lmms").rglob("*_results.json")
    harness_score = json.loads(results.read_text())["results"]["modrwkv_digits"]["exact_match,none"]
    assert main(["eval", "--task", "custom", "--model", str(tiny_model_dir()), "--data", str(data / "test.jsonl"),
                 "--output", str(tmp_path / "ours"), "--no-progress"]) == 0
    ours = [json.loads(line) for line in (tmp_path / "ours" / "predictions.jsonl").read_text().splitlines()]
    assert [harness[i]["filtered_resps"].strip() for i in range(len(records))] == [r["prediction"] for r in ours]
    assert any(r["prediction"] for r in ours)  # replies to compare, not empty strings
    assert harness_score == json.loads((tmp_path / "ours" / "summary.json").read_text())["metrics"]["accuracy"] / 100


def test_vlmevalkit_launcher_names_a_missing_run_py_and_a_missing_vlmevalkit(tmp_path, monkeypatch, capsys):
    """docs/evaluation.md's launcher line with VLMEvalKit not cloned, or cloned but not installed: one line
    saying which, not a traceback from inside run.py."""
    from modrwkv.evaluation.harness.vlmevalkit import main

    command = ["--model-path", str(tmp_path / "model"), "--run", str(tmp_path / "VLMEvalKit" / "run.py"), "--", "--data", "X"]
    with pytest.raises(SystemExit) as exited:
        main(command)
    assert exited.value.code == 2
    assert f"--run {tmp_path}/VLMEvalKit/run.py: no such file (VLMEvalKit's run.py" in capsys.readouterr().err
    (tmp_path / "VLMEvalKit").mkdir()
    (tmp_path / "VLMEvalKit" / "run.py").write_text("raise SystemExit('run.py ran')\n")
    monkeypatch.setitem(sys.modules, "vlmeval", None)  # an import of it fails, installed or not
    with pytest.raises(SystemExit) as exited:
        main(command)
    assert exited.value.code == 2
    assert f"VLMEvalKit is not installed (pip install -e {tmp_path}/VLMEvalKit, the clone" in capsys.readouterr().err
    (tmp_path / "VLMEvalKit" / "vlmeval").mkdir()  # installed, one of its own dependencies missing
    (tmp_path / "VLMEvalKit" / "vlmeval" / "__init__.py").write_text("import a_dependency_not_installed\n")
    monkeypatch.delitem(sys.modules, "vlmeval")
    monkeypatch.syspath_prepend(str(tmp_path / "VLMEvalKit"))
    with pytest.raises(SystemExit) as exited:
        main(command)
    assert exited.value.code == 2
    assert "VLMEvalKit does not import: ModuleNotFoundError: No module named 'a_dependency_not_installed'" in \
        capsys.readouterr().err

"""The built-in benchmarks read lmms-eval's copies on the Hugging Face hub (lmms-lab/POPE, lmms-lab/ScienceQA
ScienceQA-IMG, lmms-lab/textvqa, lmms-lab/MMBench en, lmms-lab/VQAv2, lmms-lab/GQA) as they read the official files: the same
questions give the same samples (ids, prompts, references, groups, images) and the same scores. The hub
copies are written by `datasets` with the Features of each repository's card (tests/eval_fixtures.py);
where lmms-eval's own task code loads without its package, its per-question scores are compared too."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import sys
import types
import zipfile
from pathlib import Path

import pytest
from eval_fixtures import HUB_WRITERS, WRITERS
from PIL import Image

from modrwkv.data.readers.base import read_embedded
from modrwkv.evaluation import BenchmarkFileError, ModelSpec, get_task, run_eval

SPLITS = {"pope": "all", "scienceqa": "test", "textvqa": "val", "mmbench": "dev", "vqav2": "val",
          "gqa": "testdev-balanced"}


def pixels(item) -> bytes:
    """An image item (a path, bytes, their place in a file, a base64 data URI) decoded to RGB pixels."""
    if isinstance(item, str) and item.startswith("data:"):
        import base64

        item = base64.b64decode(item.partition(",")[2])
    data = item.read_bytes() if isinstance(item, Path) else read_embedded(item)
    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def both(tmp_path: Path, name: str) -> tuple[Path, Path]:
    official = WRITERS[name](tmp_path / "official")
    return official, HUB_WRITERS[name](tmp_path / "hub", official)


def comparable(sample, sample_id: str | None = None) -> dict:
    """What a sample is asked and scored with, its image as pixels."""
    fields = dataclasses.asdict(dataclasses.replace(sample, images=[]))
    if sample_id is not None:
        fields["id"] = sample_id
    return {**fields, "images": [pixels(item) for item in sample.images]}


@pytest.mark.parametrize("name", sorted(HUB_WRITERS))
def test_a_hub_copy_gives_the_samples_of_the_official_files(tmp_path, name):
    """The repository folder, its shards' folder, one shard and the hub cache's folders all give the
    official samples: same ids (ScienceQA's copy has no problem ids: its rows are numbered), prompts,
    references (answers, labels, POPE's category, MMBench's circular index) and images."""
    official, hub = both(tmp_path, name)
    task, split = get_task(name), SPLITS[name]
    expected = task.load(official, split)
    shard_folder = next(folder for folder in sorted(hub.iterdir(), reverse=True) if folder.is_dir())
    cache = tmp_path / "cache" / f"datasets--lmms-lab--{hub.name}"
    shutil.copytree(hub, cache / "snapshots" / "0123abc")
    for given in (hub, shard_folder, sorted(shard_folder.glob("*.parquet"))[0], cache, cache / "snapshots" / "0123abc"):
        samples = task.load(given, split)
        ids = [str(k) for k in range(len(expected))] if name == "scienceqa" else [s.id for s in expected]
        assert [comparable(s) for s in samples] == [comparable(s, i) for s, i in zip(expected, ids)], given
    assert len(expected) == {"pope": 6, "scienceqa": 2, "textvqa": 2, "mmbench": 4, "vqav2": 3, "gqa": 3}[name]
    if name == "pope":  # one category alone, in its file's order
        assert [s.id for s in task.load(hub, "popular")] == ["popular/1", "popular/2"]
    if name == "mmbench":  # lmms-lab/MMBench_EN: data/, its shard named with a hash as older uploads were
        (tmp_path / "MMBench_EN" / "data").mkdir(parents=True)
        shutil.copy(hub / "en" / "dev-00000-of-00001.parquet",
                    tmp_path / "MMBench_EN" / "data" / "dev-00000-of-00001-75b6649fb044d38b.parquet")
        assert [comparable(s) for s in task.load(tmp_path / "MMBench_EN", split)] == [comparable(s) for s in expected]
    if name == "scienceqa":
        assert [comparable(s, "4") for s in task.load(hub, "val")] == [comparable(s) for s in task.load(official, "val")]


@dataclasses.dataclass
class Reply:
    text: str
    finish_reason: str = "stop"


class ScriptedPipeline:
    """Replies by the question asked (whichever copy it was read from), right to some and wrong to others."""

    REPLIES = {"dog in": "Yes", "car in": "Yes", "mammal": "B", "farthest north": "A", "brand": "Dakota",
               "sign say": "Go", "What is shown": "A", "Which colour": "B", "color is the cat": "Black.",
               "How many dogs": "3", "sunny": "no", "color is the car": "red", "Is there a dog": "yes",
               "Which side": "Left."}

    def generate_batch(self, requests):
        return [Reply(next(reply for key, reply in self.REPLIES.items() if key in r.messages)) for r in requests]


@pytest.mark.parametrize("name", sorted(HUB_WRITERS))
def test_a_hub_copy_scores_as_the_official_files(tmp_path, name):
    official, hub = both(tmp_path, name)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights")
    task = get_task(name)
    runs = [run_eval(task, data, tmp_path / f"out-{k}", model=ModelSpec(str(weights)), load_pipeline=ScriptedPipeline,
                     batch_size=2) for k, data in enumerate((official, hub))]
    assert runs[0].summary["metrics"] == runs[1].summary["metrics"]
    assert 0 < runs[1].summary["headline"]["value"] < 100
    lines = [[json.loads(line) for line in (tmp_path / f"out-{k}" / "predictions.jsonl").read_text().splitlines()]
             for k in range(2)]
    assert [(r["prediction"], r["score"]) for r in lines[0]] == [(r["prediction"], r["score"]) for r in lines[1]]
    if name != "scienceqa":  # the same questions under the same ids: the same data fingerprint
        assert json.loads((tmp_path / "out-0" / "run.json").read_text())["data"] == \
            json.loads((tmp_path / "out-1" / "run.json").read_text())["data"]
    if name == "pope":  # the CLI, given one shard, reads the split's shards: the finished run, which it re-summarises
        from modrwkv.cli import main

        assert main(["eval", "--task", name, "--data", str(sorted((hub / "data").glob("*.parquet"))[1]), "--model",
                     str(weights), "--output", str(tmp_path / "out-1"), "--no-progress"]) == 0


# --- lmms-eval's own scoring of the same rows -------------------------------------------------------------

# lmms-eval's wheel (pip download lmms-eval==0.7.3 --no-deps, which `scripts/setup.sh --test` does into .cache/wheels);
# its task code needs packages modrwkv's tests do not install, so it is read from the wheel rather than imported
WHEEL = Path(os.environ.get("LMMS_EVAL_WHEEL",
                            Path(__file__).resolve().parents[1] / ".cache" / "wheels" / "lmms_eval-0.7.3-py3-none-any.whl"))


def lmms_utils(task: str, monkeypatch) -> types.ModuleType:
    """lmms-eval 0.7.3's `tasks/<task>/utils.py`, loaded from its wheel; its logger and submission-file
    helper (which need lmms-eval's package) stubbed, its VQA answer processor its own."""
    if not WHEEL.is_file():
        pytest.skip(f"lmms-eval's wheel is not at {WHEEL}: bash scripts/setup.sh --test downloads it (or set "
                    "LMMS_EVAL_WHEEL to its path)")
    wheel = zipfile.ZipFile(WHEEL)

    def module(name: str, source: str | None = None, **attributes) -> types.ModuleType:
        loaded = types.ModuleType(name)
        loaded.__dict__.update(attributes)
        if source is not None:
            exec(compile(wheel.read(source).decode(), f"{WHEEL}/{source}", "exec"), loaded.__dict__)
        monkeypatch.setitem(sys.modules, name, loaded)
        return loaded

    module("loguru", logger=types.SimpleNamespace(info=print, debug=print, warning=print))
    module("lmms_eval", tasks=module("lmms_eval.tasks", _task_utils=module(
        "lmms_eval.tasks._task_utils",
        file_utils=module("lmms_eval.tasks._task_utils.file_utils",
                          generate_submission_file=lambda *a: pytest.fail("no files")),
        vqa_eval_metric=module("lmms_eval.tasks._task_utils.vqa_eval_metric",
                               "lmms_eval/tasks/_task_utils/vqa_eval_metric.py"))))
    return module(f"lmms_utils_{task}", f"lmms_eval/tasks/{task}/utils.py")


def hub_docs(folder: Path) -> list[dict]:
    """The rows of a hub copy as lmms-eval's `datasets` gives them to its task code."""
    import datasets

    files = sorted(str(path) for path in folder.glob("*/*.parquet"))
    return list(datasets.load_dataset("parquet", data_files=files, split="train"))


@pytest.mark.parametrize("name, replies", [
    ("pope", ["Yes", "no", "No", "yes", "Yes", "No"]),  # replies lmms-eval's exact match and LLaVA's parse agree on
    ("scienceqa", ["B", "A. Ohio"]),
    ("textvqa", ["Dakota.", "the sign says STOP"]),
    ("vqav2", ["Black.", "two", "no"]),
])
def test_per_question_scores_equal_lmms_evals_own(tmp_path, monkeypatch, name, replies):
    """The rows lmms-eval reads, scored by its `process_results`, score as our samples from the same copy."""
    _, hub = both(tmp_path, name)
    utils = lmms_utils(name, monkeypatch)
    docs = hub_docs(hub)
    task = get_task(name)
    samples = task.load(hub, SPLITS[name])
    if name == "pope":  # lmms-eval reads the table's order; ours groups the categories in the official order
        order = {f"{d['category']}/{int(d['question_id'])}": d for d in docs}
        docs = [order[s.id] for s in samples]
        theirs = [utils.pope_process_results(d, [r])["pope_accuracy"]["score"] for d, r in zip(docs, replies)]
        key = "correct"
    elif name == "scienceqa":
        theirs = [utils.sqa_process_results(d, [r])["exact_match"] for d, r in zip(docs, replies)]
        key = "correct"
    elif name == "textvqa":
        theirs = [utils.textvqa_process_results(d, [r])["exact_match"] for d, r in zip(docs, replies)]
        key = "accuracy"
    else:
        theirs = [utils.vqav2_process_results_val(d, [r])["exact_match"] for d, r in zip(docs, replies)]
        key = "accuracy"
    ours = [float(task.score({"id": s.id, "prediction": r, "reference": s.reference})[key])
            for s, r in zip(samples, replies)]
    assert ours == pytest.approx(theirs) and len(ours) == len(replies)
    assert 0 < sum(ours) < len(ours)  # some right, some wrong


# --- copies that are not whole ------------------------------------------------------------------------------


def test_a_partial_or_foreign_hub_copy_is_refused_naming_what_is_missing(tmp_path):
    official, hub = both(tmp_path, "pope")
    pope = get_task("pope")
    (hub / "data" / "test-00001-of-00003.parquet").unlink()
    with pytest.raises(BenchmarkFileError, match=r"data: missing shard\(s\) test-00001-of-00003.parquet of split 'test'"):
        pope.load(hub, "all")
    # a table without lmms-lab/POPE's columns: the error names them and shows both layouts
    import datasets

    (hub / "data" / "test-00000-of-00003.parquet").unlink()
    (hub / "data" / "test-00002-of-00003.parquet").unlink()
    datasets.Dataset.from_list([{"question": "Is there a dog?", "answer": "yes"}]).to_parquet(
        hub / "data" / "test-00000-of-00001.parquet")
    with pytest.raises(BenchmarkFileError, match=r"missing column\(s\) \['question_id', 'category', 'image'\]"
                       r"(?s:.*)coco_pope_random.json(?s:.*)lmms-lab/POPE"):
        pope.load(hub, "all")
    # a shard of another split, and a folder of neither layout
    with pytest.raises(BenchmarkFileError, match=r"a shard of split 'validation'; this evaluation reads split 'test'"):
        pope.load(HUB_WRITERS["textvqa"](tmp_path / "t", WRITERS["textvqa"](tmp_path / "t")) / "data"
                  / "validation-00000-of-00002.parquet", "all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkFileError, match=r"no 'coco_pope_random.json'(?s:.*)data/test-00000-of-00003.parquet"):
        pope.load(tmp_path / "empty", "all")
    # GQA's questions without the images config beside them, or an image missing from it
    _, gqa = both(tmp_path / "g", "gqa")
    shutil.rmtree(gqa / "testdev_balanced_images")
    with pytest.raises(BenchmarkFileError, match=r"GQA: no testdev_balanced_images folder beside testdev_balanced_instructions"):
        get_task("gqa").load(gqa, "testdev-balanced")
    # ScienceQA's minival is no split of the hub copy; a cache folder with two snapshots is ambiguous
    _, scienceqa = both(tmp_path / "s", "scienceqa")
    with pytest.raises(BenchmarkFileError, match=r"the hub copy has no split minival \(a part of val LLaVA chose"):
        get_task("scienceqa").load(scienceqa, "minival")
    # the splits whose submissions need the official files, asked of a hub copy holding only what it is read for
    _, vqav2 = both(tmp_path / "v", "vqav2")
    with pytest.raises(BenchmarkFileError, match=r"the hub copy is read for split val; test-dev's submission"):
        get_task("vqav2").load(vqav2, "test-dev")
    _, mmbench = both(tmp_path / "m", "mmbench")
    for given in (mmbench, next((mmbench / "en").glob("dev-*.parquet"))):
        with pytest.raises(BenchmarkFileError, match=r"the hub copy is read for split dev; the test split's submission"):
            get_task("mmbench").load(given, "test")
    cache = tmp_path / "datasets--lmms-lab--ScienceQA"
    for revision in ("aaa", "bbb"):
        shutil.copytree(scienceqa, cache / "snapshots" / revision)
    with pytest.raises(BenchmarkFileError, match=r"snapshots: 2 snapshots; give the one to read"):
        get_task("scienceqa").load(cache, "test")


def test_a_hub_copy_without_pyarrow_names_the_eval_extra(tmp_path, monkeypatch):
    """Reading a benchmark's Parquet files needs pyarrow: without it, one line naming `modrwkv[eval]` (what an
    evaluation installs), not the training extra the data readers name."""
    from modrwkv.extras import MissingExtraError

    _, hub = both(tmp_path, "pope")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import pyarrow.parquet now fails
    with pytest.raises(MissingExtraError, match=r"reading a benchmark's Parquet files needs the 'pyarrow' package, "
                       r"which is not installed: pip install 'modrwkv\[eval\]'"):
        get_task("pope").load(hub, "all")

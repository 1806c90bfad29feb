"""Tiny copies of every benchmark's released file layout, written by the eval tests into tmp_path.

Each writer lays its files out exactly as the benchmark releases them (names, JSON shapes, TSV
columns, parquet columns, transcripts and audio formats) with a handful of samples, and returns the
folder to pass as `--data`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import types
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

MMMU_SUBJECTS_WITH_ROWS = ("Accounting", "Art")
# pycocoevalcap 1.2's wheel, the COCO caption evaluation (pip download --no-deps pycocoevalcap==1.2, which
# `scripts/setup.sh --test` does into .cache/wheels): the reference our caption metrics are checked against, read
# from the wheel rather than installed (its scorers need numpy alone; its tokenizer, Java)
COCO_CAPTION_WHEEL = Path(os.environ.get("PYCOCOEVALCAP_WHEEL", Path(__file__).resolve().parents[1] / ".cache"
                                         / "wheels" / "pycocoevalcap-1.2-py3-none-any.whl"))


def picture(seed: int, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def save_picture(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture(seed).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def jpeg_base64(seed: int) -> str:
    buffer = io.BytesIO()
    picture(seed).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_vqav2(root: Path) -> Path:
    """val2014 (3 questions, 10 answers each) and test-dev (LLaVA's question files)."""
    folder = root / "vqav2"
    folder.mkdir(parents=True)
    questions = [(11, 42, "What color is the cat?"), (12, 42, "How many dogs?"), (13, 77, "Is it sunny?")]
    answers = {
        11: ["black"] * 6 + ["dark", "black cat", "grey", "black"],
        12: ["2", "two", "2", "2", "3", "2", "2", "two", "2", "2"],
        13: ["yes"] * 10,
    }
    (folder / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(
        {"questions": [{"image_id": i, "question": q, "question_id": qid} for qid, i, q in questions]}))
    (folder / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": qid, "image_id": i, "answer_type": "yes/no" if qid == 13 else "other",
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers[qid])]}
        for qid, i, _ in questions]}))
    for image_id in (42, 77):
        save_picture(folder / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", image_id)
    test_dev = [(101, 5, "What is this?"), (102, 6, "Where is it?")]
    with (folder / "llava_vqav2_mscoco_test-dev2015.jsonl").open("w") as handle:
        for qid, image_id, question in test_dev:
            handle.write(json.dumps({"question_id": qid, "image": f"COCO_test2015_{image_id:012d}.jpg",
                                     "text": f"{question}\nAnswer the question using a single word or phrase.",
                                     "category": "default"}) + "\n")
            save_picture(folder / "test2015" / f"COCO_test2015_{image_id:012d}.jpg", image_id)
    with (folder / "llava_vqav2_mscoco_test2015.jsonl").open("w") as handle:
        for qid in (100, 101, 102, 103):
            handle.write(json.dumps({"question_id": qid, "image": "x.jpg", "text": "q", "category": "default"}) + "\n")
    return folder


def write_gqa(root: Path, items: list[tuple[str, str, Image.Image | int]] | None = None) -> Path:
    """`items`: (question, answer, image or seed); three default questions."""
    folder = root / "gqa"
    (folder / "images").mkdir(parents=True)
    items = items or [("What color is the car?", "red", 1), ("Is there a dog?", "no", 2), ("Which side?", "left", 3)]
    questions = {}
    for k, (question, answer, image) in enumerate(items):
        image_id = f"n{1000 + k}"
        if isinstance(image, int):
            save_picture(folder / "images" / f"{image_id}.jpg", image)
        else:
            image.save(folder / "images" / f"{image_id}.jpg", format="PNG")  # lossless; PIL reads by content
        questions[f"{2000 + k}"] = {"imageId": image_id, "question": question, "answer": answer,
                                    "fullAnswer": f"The answer is {answer}.", "types": {"structural": "query"}}
    (folder / "testdev_balanced_questions.json").write_text(json.dumps(questions))
    return folder


def write_textvqa(root: Path) -> Path:
    folder = root / "textvqa"
    folder.mkdir(parents=True)
    data = [{"question_id": 34602, "question": "what is the brand?", "image_id": "003a8ae2ef43b901",
             "answers": ["nous les gosses"] * 3 + ["dakota"] * 7},
            {"question_id": 34603, "question": "what does the sign say?", "image_id": "00685bc495504d61",
             "answers": ["Stop"] * 10}]
    (folder / "TextVQA_0.5.1_val.json").write_text(json.dumps({"dataset_type": "val", "data": data}))
    for k, entry in enumerate(data):
        save_picture(folder / "train_images" / f"{entry['image_id']}.jpg", 10 + k)
    return folder


def write_scienceqa(root: Path) -> Path:
    """Test problems 1 and 3 have images (the IMG subset); problem 2 has none."""
    folder = root / "scienceqa"
    folder.mkdir(parents=True)
    problems = {
        "1": {"question": "Which is a mammal?", "choices": ["frog", "whale", "shark"], "answer": 1, "hint": "",
              "image": "image.png", "split": "test", "subject": "natural science"},
        "2": {"question": "Which word is a noun?", "choices": ["run", "cat"], "answer": 1, "hint": "",
              "image": None, "split": "test", "subject": "language science"},
        "3": {"question": "Which state is farthest north?", "choices": ["Ohio", "Maine"], "answer": 1,
              "hint": "Look at the map.", "image": "image.png", "split": "test", "subject": "social science"},
        "4": {"question": "Val question?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png",
              "split": "val", "subject": "x"},
    }
    (folder / "problems.json").write_text(json.dumps(problems))
    (folder / "pid_splits.json").write_text(json.dumps({"train": [], "val": ["4"], "test": ["1", "2", "3"],
                                                         "minival": ["4"]}))
    for pid, split in (("1", "test"), ("3", "test"), ("4", "val")):
        save_picture(folder / "images" / split / pid / "image.png", int(pid))
    return folder


def write_pope(root: Path) -> Path:
    folder = root / "pope"
    folder.mkdir(parents=True)
    for s, split in enumerate(("random", "popular", "adversarial")):
        with (folder / f"coco_pope_{split}.json").open("w") as handle:
            for qid, (obj, label) in enumerate((("dog", "yes"), ("car", "no")), 1):
                image = f"COCO_val2014_{s * 10 + qid:012d}.jpg"
                handle.write(json.dumps({"question_id": qid, "image": image, "text": f"Is there a {obj} in the image?",
                                         "label": label}) + "\n")
                save_picture(folder / "val2014" / image, s * 10 + qid)
    return folder


def write_mmbench(root: Path, with_answers: bool = True) -> Path:
    """Two questions; the first has two circular variants (index + 1e6, + 2e6) as in the release."""
    import pandas

    folder = root / "mmbench"
    folder.mkdir(parents=True)
    rows = [
        {"index": 0, "question": "What is shown?", "hint": "A photo.", "A": "cat", "B": "dog", "C": "bird",
         "answer": "A", "category": "object", "l2-category": "perception", "source": "x", "split": "dev", "image": 0},
        {"index": 1000000, "question": "What is shown?", "hint": "A photo.", "A": "dog", "B": "bird", "C": "cat",
         "answer": "C", "category": "object", "l2-category": "perception", "source": "x", "split": "dev", "image": 0},
        {"index": 2000000, "question": "What is shown?", "hint": "A photo.", "A": "bird", "B": "cat", "C": "dog",
         "answer": "B", "category": "object", "l2-category": "perception", "source": "x", "split": "dev", "image": 0},
        {"index": 1, "question": "Which colour?", "hint": None, "A": "red", "B": "blue", "C": None,
         "answer": "B", "category": "attribute", "l2-category": "perception", "source": "x", "split": "dev", "image": 1},
    ]
    for row in rows:
        row["image"] = jpeg_base64(row["image"])
        if not with_answers:
            del row["answer"]
    name = "MMBench_DEV_EN.tsv" if with_answers else "MMBench_TEST_EN.tsv"
    pandas.DataFrame(rows).to_csv(folder / name, sep="\t", index=False)
    return folder


def write_mmmu(root: Path) -> Path:
    """All 30 subject folders (the loader requires them); two hold questions, the rest are empty."""
    import pandas

    from modrwkv.evaluation.tasks.choice import MMMU_SUBJECTS

    folder = root / "mmmu"
    columns = ["id", "question", "options", "explanation", "image_1", "image_2", "img_type", "answer",
               "topic_difficulty", "question_type", "subfield"]
    png = io.BytesIO()
    picture(5).save(png, format="PNG")
    for subject in MMMU_SUBJECTS:
        rows = []
        if subject in MMMU_SUBJECTS_WITH_ROWS:
            rows = [
                {"id": f"validation_{subject}_1", "question": "<image 1> Which is it?", "options": "['cat', 'dog', 'cow']",
                 "explanation": "", "image_1": {"bytes": png.getvalue(), "path": "a.png"}, "image_2": None,
                 "img_type": "['Photos']", "answer": "B", "topic_difficulty": "Easy", "question_type": "multiple-choice",
                 "subfield": "x"},
                {"id": f"validation_{subject}_2", "question": "How many legs does <image 1> show?", "options": "[]",
                 "explanation": "", "image_1": {"bytes": png.getvalue(), "path": "b.png"}, "image_2": None,
                 "img_type": "['Photos']", "answer": "['4', 'four']", "topic_difficulty": "Easy",
                 "question_type": "open", "subfield": "x"},
            ]
        (folder / subject).mkdir(parents=True)
        frame = pandas.DataFrame(rows, columns=columns)
        frame.to_parquet(folder / subject / "validation-00000-of-00001.parquet")
    return folder


def _tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


def write_librispeech(root: Path) -> Path:
    import soundfile

    folder = root / "LibriSpeech"
    utterances = {("84", "121123"): ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"], ("174", "50561"): ["HELLO WORLD"]}
    for (speaker, chapter), texts in utterances.items():
        chapter_dir = folder / "test-clean" / speaker / chapter
        chapter_dir.mkdir(parents=True)
        lines = []
        for k, text in enumerate(texts):
            utterance = f"{speaker}-{chapter}-{k:04d}"
            soundfile.write(chapter_dir / f"{utterance}.flac", _tone(0.4, k), 16000, format="FLAC")
            lines.append(f"{utterance} {text}")
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_aishell(root: Path) -> Path:
    """Two test utterances with transcripts, and one recording without (left out, as recipes do)."""
    import soundfile

    folder = root / "data_aishell"
    (folder / "transcript").mkdir(parents=True)
    (folder / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\nBAC009S0764W0122 一二线 城市 虽然 也 处于 调整 中\n")
    speaker = folder / "wav" / "test" / "S0764"
    speaker.mkdir(parents=True)
    for k, utterance in enumerate(("BAC009S0764W0121", "BAC009S0764W0122", "BAC009S0764W0999")):
        soundfile.write(speaker / f"{utterance}.wav", _tone(0.4, k), 16000, subtype="PCM_16")
    return folder


def write_etth1(root: Path, rows: int = 14400) -> Path:
    """An ETTh1-shaped CSV (date + 2 channels), exactly long enough for the ETT borders."""
    folder = root / "ETT-small"
    folder.mkdir(parents=True)
    t = np.arange(rows)
    a = 10 + 3 * np.sin(2 * np.pi * t / 24) + 0.001 * t
    b = 5 + np.cos(2 * np.pi * t / 12) - 0.0005 * t
    lines = ["date,HUFL,OT"] + [f"2016-07-01 {i % 24:02d}:00:00,{x:.3f},{y:.3f}" for i, (x, y) in enumerate(zip(a, b))]
    (folder / "ETTh1.csv").write_text("\n".join(lines) + "\n")
    return folder


WRITERS = {
    "vqav2": write_vqav2, "gqa": write_gqa, "textvqa": write_textvqa, "scienceqa": write_scienceqa,
    "pope": write_pope, "mmbench": write_mmbench, "mmmu": write_mmmu, "librispeech": write_librispeech,
    "aishell": write_aishell, "etth1": write_etth1,
}


# --- lmms-eval's copies on the Hugging Face hub -----------------------------------------------
#
# Each writer turns an official folder written above into the repository lmms-eval downloads, holding the
# same questions: the files where `huggingface-cli download REPO --repo-type dataset --local-dir D` puts
# them, written by `datasets` with the Features of the repository's card (README `dataset_info`), the
# images embedded. Sources: docs/evaluation.md "lmms-eval's copies".


def _write_hub_split(folder: Path, split: str, rows: list[dict], features, shards: int = 1) -> None:
    """`rows` as `datasets` pushes a split: `<split>-0000k-of-0000n.parquet` shards of consecutive rows."""
    import datasets

    folder.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_list(rows, features=features)
    for k in range(shards):
        table.shard(shards, k, contiguous=True).to_parquet(folder / f"{split}-{k:05d}-of-{shards:05d}.parquet")


def _image_cell(path: Path) -> dict:
    return {"bytes": path.read_bytes(), "path": path.name}


def write_pope_hub(root: Path, official: Path) -> Path:
    """lmms-lab/POPE, default config: one test split of the three files, adversarial first (the card's
    viewer: id "0", question_id "1", ..., category "adversarial"), in three shards."""
    import datasets

    features = datasets.Features({"id": datasets.Value("string"), "question_id": datasets.Value("string"),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "image_source": datasets.Value("string"), "image": datasets.Image(),
                                  "category": datasets.Value("string")})
    rows = []
    for category in ("adversarial", "popular", "random"):
        for line in (official / f"coco_pope_{category}.json").read_text().splitlines():
            record = json.loads(line)
            rows.append({"id": str(len(rows)), "question_id": str(record["question_id"]), "question": record["text"],
                         "answer": record["label"], "image_source": record["image"].removesuffix(".jpg"),
                         "image": _image_cell(official / "val2014" / record["image"]), "category": category})
    folder = root / "POPE"
    _write_hub_split(folder / "data", "test", rows, features, shards=3)
    return folder


def write_scienceqa_hub(root: Path, official: Path) -> Path:
    """lmms-lab/ScienceQA, config ScienceQA-IMG: the problems with an image, without their ids."""
    import datasets

    strings = ("hint", "task", "grade", "subject", "topic", "category", "skill", "lecture", "solution")
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "choices": datasets.Sequence(datasets.Value("string")),
                                  "answer": datasets.Value("int8"),
                                  **{name: datasets.Value("string") for name in strings}})
    problems = json.loads((official / "problems.json").read_text())
    splits = json.loads((official / "pid_splits.json").read_text())
    folder = root / "ScienceQA"
    for split, hub_split in (("test", "test"), ("val", "validation")):
        rows = [{"image": _image_cell(official / "images" / split / pid / problems[pid]["image"]),
                 "question": problems[pid]["question"], "choices": problems[pid]["choices"],
                 "answer": problems[pid]["answer"], "hint": problems[pid]["hint"], "subject": problems[pid]["subject"],
                 **{name: "" for name in strings if name not in ("hint", "subject")}}
                for pid in splits[split] if problems[pid]["image"]]
        _write_hub_split(folder / "ScienceQA-IMG", hub_split, rows, features)
    return folder


def write_textvqa_hub(root: Path, official: Path) -> Path:
    """lmms-lab/textvqa: the validation split, in two shards."""
    import datasets

    sequence = datasets.Sequence(datasets.Value("string"))
    features = datasets.Features({
        "image_id": datasets.Value("string"), "question_id": datasets.Value("int32"),
        "question": datasets.Value("string"), "question_tokens": sequence, "image": datasets.Image(),
        "image_width": datasets.Value("int32"), "image_height": datasets.Value("int32"),
        "flickr_original_url": datasets.Value("string"), "flickr_300k_url": datasets.Value("string"),
        "answers": sequence, "image_classes": sequence, "set_name": datasets.Value("string"), "ocr_tokens": sequence})
    rows = [{"image_id": q["image_id"], "question_id": q["question_id"], "question": q["question"],
             "question_tokens": q["question"].split(), "image": _image_cell(official / "train_images" / f"{q['image_id']}.jpg"),
             "image_width": 32, "image_height": 32, "flickr_original_url": "", "flickr_300k_url": "",
             "answers": q["answers"], "image_classes": [], "set_name": "val", "ocr_tokens": ["stop"]}
            for q in json.loads((official / "TextVQA_0.5.1_val.json").read_text())["data"]]
    folder = root / "textvqa"
    _write_hub_split(folder / "data", "validation", rows, features, shards=2)
    return folder


def write_mmbench_hub(root: Path, official: Path) -> Path:
    """lmms-lab/MMBench, config en, split dev: the TSV's rows, its empty cells as the text "nan" (what
    lmms-eval's MMBench code skips), the images decoded from base64 and embedded."""
    import datasets
    import pandas

    columns = ("index", "question", "hint", "answer", "A", "B", "C", "D", "category")
    features = datasets.Features({**{name: datasets.Value("string") for name in columns}, "image": datasets.Image(),
                                  **{name: datasets.Value("string") for name in ("source", "L2-category", "comment",
                                                                                  "split")}})
    table = pandas.read_csv(official / "MMBench_DEV_EN.tsv", sep="\t")
    rows = [{**{name: str(row.get(name, float("nan"))) for name in columns},
             "image": {"bytes": base64.b64decode(row["image"]), "path": None}, "source": str(row["source"]),
             "L2-category": str(row["l2-category"]), "comment": "nan", "split": str(row["split"])}
            for row in table.to_dict("records")]
    folder = root / "MMBench"
    _write_hub_split(folder / "en", "dev", rows, features)
    return folder


def write_vqav2_hub(root: Path, official: Path) -> Path:
    """lmms-lab/VQAv2's validation split: each val2014 question with its annotation and image, in two shards."""
    import datasets

    answer = {"answer": datasets.Value("string"), "answer_confidence": datasets.Value("string"),
              "answer_id": datasets.Value("int64")}
    features = datasets.Features({"question_type": datasets.Value("string"),
                                  "multiple_choice_answer": datasets.Value("string"), "answers": [answer],
                                  "image_id": datasets.Value("int64"), "answer_type": datasets.Value("string"),
                                  "question_id": datasets.Value("int64"), "question": datasets.Value("string"),
                                  "image": datasets.Image()})
    questions = json.loads((official / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    annotations = {a["question_id"]: a for a in
                   json.loads((official / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]}
    rows = [{"question_type": "what", "multiple_choice_answer": annotations[q["question_id"]]["answers"][0]["answer"],
             "answers": annotations[q["question_id"]]["answers"], "image_id": q["image_id"],
             "answer_type": annotations[q["question_id"]]["answer_type"], "question_id": q["question_id"],
             "question": q["question"],
             "image": _image_cell(official / "val2014" / f"COCO_val2014_{q['image_id']:012d}.jpg")} for q in questions]
    folder = root / "VQAv2"
    _write_hub_split(folder / "data", "validation", rows, features, shards=2)
    return folder


def write_gqa_hub(root: Path, official: Path) -> Path:
    """lmms-lab/GQA's testdev_balanced_instructions and testdev_balanced_images configs (questions; images by id)."""
    import datasets

    questions = json.loads((official / "testdev_balanced_questions.json").read_text())
    folder = root / "GQA"
    string = datasets.Value("string")
    _write_hub_split(folder / "testdev_balanced_instructions", "testdev",
                     [{"id": qid, "imageId": q["imageId"], "question": q["question"], "answer": q["answer"],
                       "fullAnswer": q["fullAnswer"], "isBalanced": True} for qid, q in questions.items()],
                     datasets.Features({"id": string, "imageId": string, "question": string, "answer": string,
                                        "fullAnswer": string, "isBalanced": datasets.Value("bool")}))
    _write_hub_split(folder / "testdev_balanced_images", "testdev",
                     [{"id": path.stem, "image": _image_cell(path)} for path in sorted((official / "images").iterdir())],
                     datasets.Features({"id": string, "image": datasets.Image()}))
    return folder


HUB_WRITERS = {"vqav2": write_vqav2_hub, "gqa": write_gqa_hub, "pope": write_pope_hub, "scienceqa": write_scienceqa_hub, "textvqa": write_textvqa_hub,
               "mmbench": write_mmbench_hub}


def scripted_model(tmp_path: Path, monkeypatch, reply=None) -> Path:
    """A model folder that `modrwkv eval` answers with a scripted pipeline: `reply(messages)` for each request's
    messages, by default what the question says to reply ("... reply=dog")."""
    import re
    from dataclasses import dataclass

    import modrwkv.cli

    @dataclass
    class Reply:
        text: str
        finish_reason: str = "stop"

    said = reply or (lambda messages: re.search(r"reply=(\S*)", messages).group(1))

    class ScriptedPipeline:
        def generate_batch(self, requests):
            return [Reply(said(r.messages)) for r in requests]

    monkeypatch.setattr(modrwkv.cli, "_load_pipeline", lambda *args, **kwargs: ScriptedPipeline())
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.pth").write_bytes(b"not loaded")
    return model


def real_series(co2_weeks: int = 400) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Real series statsmodels ships, name -> (timestamps, values; NaN where a value is missing): the yearly
    sunspots (309 years from 1700), the Nile's yearly flow (100), El Nino's monthly sea temperature (61 years'
    rows of 12 months, 732 months) and the first `co2_weeks` weeks of Mauna Loa's weekly co2 (with gaps)."""
    import statsmodels.api as sm

    def years(column: np.ndarray) -> np.ndarray:
        return np.array([f"{int(year)}-01-01" for year in column], dtype="datetime64[ms]")

    sunspots = sm.datasets.sunspots.load_pandas().data
    nile = sm.datasets.nile.load_pandas().data
    elnino = sm.datasets.elnino.load_pandas().data
    co2 = sm.datasets.co2.load_pandas().data.iloc[:co2_weeks]
    first_year = int(elnino["YEAR"].iloc[0])
    months = np.arange(f"{first_year}-01", f"{first_year + len(elnino)}-01", dtype="datetime64[M]")
    return {"sunspots": (years(sunspots["YEAR"]), sunspots["SUNACTIVITY"].to_numpy(dtype=np.float64)),
            "nile": (years(nile["year"]), nile["volume"].to_numpy(dtype=np.float64)),
            "elnino": (months.astype("datetime64[ms]"), elnino.iloc[:, 1:].to_numpy(dtype=np.float64).ravel()),
            "co2": (co2.index.to_numpy().astype("datetime64[ms]"), co2["co2"].to_numpy(dtype=np.float64))}


def write_series_layouts(folder: Path, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[
        list[Path], Path, Path]:
    """`series` (name -> (timestamps, values)) as a user would hold them: a CSV of each (date and value
    columns, an empty cell for NaN; one file each, for a column padded to a longer series' length would move
    its 70/10/20 borders), a Parquet file as autogluon/chronos_datasets stores them (a row each: `id`,
    `timestamp` list, `target` list, null for NaN) and GluonTS JSON Lines ({"start", "target", "item_id"})."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    csvs = []
    targets = [[None if np.isnan(v) else float(v) for v in values] for _, values in series.values()]
    for (name, (stamps, values)), target in zip(series.items(), targets, strict=True):
        lines = [f"date,{name}"] + [f"{stamp},{'' if value is None else repr(value)}"
                                    for stamp, value in zip(stamps.astype("datetime64[D]"), target, strict=True)]
        csvs.append(folder / f"{name}.csv")
        csvs[-1].write_text("\n".join(lines) + "\n")
    parquet, jsonl = folder / "series.parquet", folder / "series.jsonl"
    pq.write_table(pa.table({
        "id": list(series),
        "timestamp": pa.array([stamps.tolist() for stamps, _ in series.values()], pa.list_(pa.timestamp("ms"))),
        "target": pa.array(targets, pa.list_(pa.float64()))}), parquet)
    jsonl.write_text("".join(json.dumps({"start": str(stamps[0].astype("datetime64[m]")).replace("T", " "),
                                         "target": target, "item_id": name}) + "\n"
                             for (name, (stamps, _)), target in zip(series.items(), targets, strict=True)))
    return csvs, parquet, jsonl


def coco_caption_module(path: str, folder: Path | None = None) -> types.ModuleType:
    """pycocoevalcap 1.2's module at `path` in its wheel ("pycocoevalcap/cider/cider_scorer.py"), loaded from the
    wheel; with `folder`, the module and the files beside it (the tokenizer's CoreNLP jar) extracted there first,
    the module loaded from there (it runs its jar from its own folder). The test skips without the wheel."""
    import pytest

    if not COCO_CAPTION_WHEEL.is_file():
        pytest.skip(f"pycocoevalcap's wheel is not at {COCO_CAPTION_WHEEL}: bash scripts/setup.sh --test downloads "
                    "it (or set PYCOCOEVALCAP_WHEEL to its path)")
    wheel = zipfile.ZipFile(COCO_CAPTION_WHEEL)
    origin = f"{COCO_CAPTION_WHEEL}/{path}"
    if folder is not None:
        prefix = path.rsplit("/", 1)[0] + "/"
        for name in wheel.namelist():
            if name.startswith(prefix) and "/" not in name[len(prefix):]:
                (folder / name[len(prefix):]).write_bytes(wheel.read(name))
        origin = str(folder / path.rsplit("/", 1)[1])
    module = types.ModuleType(path.removesuffix(".py").replace("/", "."))
    module.__file__ = origin
    exec(compile(wheel.read(path).decode(), origin, "exec"), module.__dict__)
    return module

"""WebDataset tar shards as img2dataset (CC3M, LAION, DataComp) and audio corpora write them: key.png +
key.txt (the caption) + key.json (metadata), key.wav + key.txt (the transcript). The tars here are
written with `tarfile` from scikit-learn's digits and synthetic speech-like WAVs; each is read,
trained on and evaluated exactly as the same records in JSONL beside the media files, media stay in
the tar until a sample is built, and a damaged tar or a bad member is one line naming it."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import AsrManifestReader, DataError, LlavaReader, OpenAIChatReader, QAReader
from modrwkv.data.readers.base import data_name, expand_paths
from modrwkv.data.readers.detect import detect_format
from modrwkv.data.readers.webdataset import TarMember
from modrwkv.encoders.media import MediaError, load_audio, load_image
from modrwkv.evaluation.tasks import CustomTask
from modrwkv.evaluation.tasks.base import BenchmarkFileError
from modrwkv.training import ConfigError, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "digits"))
from prepare import QUESTION, write_digit_images  # noqa: E402  (bench/digits/prepare.py, the JSONL version)
from container_checks import (check_hub_split_shards_refused, check_images_read_back,  # noqa: E402
                              check_init_reads_qa_folder, eval_custom, noise_pngs, read_qa_holding)

CAPTION_PROMPT = "Write a short caption for the image."  # the documented default, written out


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A tar of (name, bytes) members in this order, as webdataset's TarWriter (and img2dataset) writes one."""
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def digit_shards(folder: Path, out: Path, count: int, shards: int) -> list[dict]:
    """The first `count` digits as img2dataset writes a download: `shards` tars of key.png + key.txt (the
    caption, here the digit) + key.json (its metadata, with the caption again, and DataComp's `text`),
    beside each the shard's .parquet of download statuses and its _stats.json; returns qa records of the
    same samples, with the images as files under `folder`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names, targets = write_digit_images(folder)
    out.mkdir(parents=True)
    records, per_shard = [], -(-count // shards)
    for shard in range(shards):
        members, keys = [], []
        for index in range(shard * per_shard, min(count, (shard + 1) * per_shard)):
            key, caption = f"{index:09d}", str(targets[index])
            meta = {"url": f"https://example.com/{index}.png", "key": key, "status": "success", "caption": caption,
                    "text": caption, "width": 8, "height": 8, "error_message": None}
            members += [(f"{key}.png", (folder / "images" / names[index]).read_bytes()),
                        (f"{key}.txt", caption.encode()), (f"{key}.json", json.dumps(meta).encode())]
            keys.append(key)
            records.append({"image": f"images/{names[index]}", "question": CAPTION_PROMPT, "answer": caption,
                            "id": key})
        write_tar(out / f"{shard:05d}.tar", members)
        pq.write_table(pa.table({"key": keys, "status": ["success"] * len(keys)}), out / f"{shard:05d}.parquet")
        (out / f"{shard:05d}_stats.json").write_text(json.dumps({"count": len(keys)}))
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_img2dataset_digits_read_as_their_jsonl(tmp_path):
    records = digit_shards(tmp_path / "digits", tmp_path / "shards", 20, 2)
    jsonl = write_jsonl(tmp_path / "digits" / "train.jsonl", records)
    files = expand_paths([str(tmp_path / "shards")], "data.train")  # the tars, not img2dataset's .parquet beside them
    assert [Path(f).name for f in files] == ["00000.tar", "00001.tar"] and data_name(files[0]) == "shards"
    assert detect_format(Path(files[0])) == "qa"  # its json's `text` is metadata, not an ASR transcript
    expected, read = list(QAReader(jsonl, on_error="raise")), list(QAReader(files, on_error="raise"))
    assert len(read) == len(expected) == 20
    for got, want in zip(read, expected, strict=True):
        # (flagged as a caption, which the JSONL's record is not: training records the question it was asked)
        assert got.messages == want.messages and got.meta == {**want.meta, "captioned": True}
        assert isinstance(got.images[0], TarMember)  # read from the tar when decoded
        assert got.images[0].read() == Path(want.images[0]).read_bytes()
    assert read[10].source == f"{files[1]}:000000010"
    assert read[3].messages[0].content == f"<image>\n{CAPTION_PROMPT}" and read[3].messages[1].content == "3"
    # data.options.prompt: the question asked instead of the default
    [first, *_] = QAReader(files, prompt=QUESTION, on_error="raise")
    assert first.messages[0].content == f"<image>\n{QUESTION}"


def test_a_json_member_holding_a_record_is_that_record_with_the_members_as_its_media(tmp_path):
    """A .json with question / conversations is the record (its .txt not read); the media members are its
    media, in member order, which a LLaVA record's markers refer to."""
    names, _ = write_digit_images(tmp_path / "d")
    pngs = [(tmp_path / "d" / "images" / n).read_bytes() for n in names[:2]]
    qa = {"question": "Which digit is this?", "answer": "0"}
    llava = {"conversations": [{"from": "human", "value": "<image> and <image>: which digits?"},
                               {"from": "gpt", "value": "1, 0"}]}
    openai = {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which digit?"}]},
                           {"role": "assistant", "content": "0"}]}
    write_tar(tmp_path / "qa.tar", [("a.png", pngs[0]), ("a.json", json.dumps(qa).encode()), ("a.txt", b"zero")])
    write_tar(tmp_path / "llava.tar", [("s/b.1.png", pngs[1]), ("s/b.2.png", pngs[0]),
                                       ("s/b.json", json.dumps(llava).encode())])
    write_tar(tmp_path / "openai.tar", [("c.json", json.dumps(openai).encode()), ("c.png", pngs[0])])
    (tmp_path / "d" / "qa.jsonl").write_text(json.dumps({**qa, "image": f"images/{names[0]}"}) + "\n")
    (tmp_path / "d" / "llava.jsonl").write_text(json.dumps({**llava, "image": [f"images/{n}" for n in names[1::-1]]})
                                                + "\n")
    (tmp_path / "d" / "openai.jsonl").write_text(json.dumps({**openai, "images": [f"images/{names[0]}"]}) + "\n")
    assert [detect_format(tmp_path / f"{name}.tar") for name in ("qa", "llava", "openai")] == ["qa", "llava", "openai"]
    for reader, name in ((QAReader, "qa"), (OpenAIChatReader, "openai"), (LlavaReader, "llava")):
        [want], [got] = list(reader(tmp_path / "d" / f"{name}.jsonl")), list(reader(tmp_path / f"{name}.tar"))
        assert got.messages == want.messages
        assert [i.read() for i in got.images] == [Path(i).read_bytes() for i in want.images]
    assert got.source == f"{tmp_path / 'llava.tar'}:s/b"


def test_training_and_eval_on_tar_shards_match_jsonl(tmp_path, capsys, caplog):
    records = digit_shards(tmp_path / "digits", tmp_path / "train", 24, 2)
    jsonl = write_jsonl(tmp_path / "digits" / "train.jsonl", [{**r, "question": QUESTION} for r in records])
    # (the shards' captions are scored by CIDEr-D, their JSONL twins' answers so when their records say it)
    test_records = [{**r, "metric": "cider"} for r in digit_shards(tmp_path / "digits", tmp_path / "test", 6, 2)]
    test = write_jsonl(tmp_path / "digits" / "test.jsonl", test_records)

    def trained(name: str, data: str, options: dict) -> dict:
        cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
        cfg["data"] = {"format": "qa", "train": [data], "options": options}
        cfg["train"].update(max_steps=2, warmup_steps=0, batch_size=4, micro_batch_size=4)
        cfg["output"].update(dir=str(tmp_path / name), save_every=0)
        return train(cfg)

    # the tars' captions asked what the JSONL asks (data.options.prompt), with the JSONL's answers
    from_jsonl, from_tar = trained("jsonl", str(jsonl), {}), trained("tar", str(tmp_path / "train"), {"prompt": QUESTION})
    losses = [h["loss"] for h in from_jsonl.history]
    assert len(losses) == 2 and losses == [h["loss"] for h in from_tar.history]
    a, b = from_jsonl.model.state_dict(), from_tar.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summaries = []
    for name, data in (("jsonl", [str(test)]), ("tar", [str(tmp_path / "test")])):
        metrics, predictions = eval_custom(from_jsonl.final_dir, data, tmp_path / f"eval-{name}")
        summaries.append((metrics, [(p["id"], p["prediction"]) for p in predictions]))
    # with several shards a sample is known as "shard:key" (shards often each count their keys from 0)
    assert summaries[0][0] == summaries[1][0] and [p for _, p in summaries[0][1]] == [p for _, p in summaries[1][1]]
    assert [i for i, _ in summaries[0][1]] == [f"{k:09d}" for k in range(6)]
    assert [i for i, _ in summaries[1][1]] == [f"{k // 3:05d}.tar:{k:09d}" for k in range(6)]
    # --caption-prompt asks the shards what training asked them (its data.options.prompt), as the JSONL does
    asked = write_jsonl(tmp_path / "digits" / "asked.jsonl", [{**r, "question": QUESTION} for r in test_records])
    metrics, predictions = eval_custom(from_jsonl.final_dir, [str(asked)], tmp_path / "eval-asked")
    tar_metrics, tar_predictions = eval_custom(from_jsonl.final_dir, [str(tmp_path / "test")],
                                               tmp_path / "eval-tar-asked", "--caption-prompt", QUESTION)
    assert tar_metrics == metrics and [(p["prompt"], p["prediction"]) for p in tar_predictions] == [
        (p["prompt"], p["prediction"]) for p in predictions] and QUESTION in predictions[0]["prompt"]
    # the folder trained on the shards records the question they were asked, which eval asks them by default
    # (the same weights as from_jsonl's: the same replies); a folder without the record asks the default
    assert json.loads((from_tar.final_dir / "config.json").read_text())["caption_prompt"] == QUESTION
    assert json.loads((from_jsonl.final_dir / "config.json").read_text())["caption_prompt"] is None
    recorded = eval_custom(from_tar.final_dir, [str(tmp_path / "test")], tmp_path / "eval-tar-recorded")
    assert "does not record the question" not in caplog.text  # (nor did from_jsonl's null, asked the default above)
    assert recorded == (tar_metrics, tar_predictions)
    assert recorded[1][0]["prompt"] == f"<image>\n{QUESTION}"
    # validation during training (val_metric cider on the shards as data.val; accuracy counts their exact matches,
    # as eval --metric exact) asks what eval asks, and scores the replies as eval does: the same CIDEr-D
    from modrwkv.training import config_from_dict
    from modrwkv.training.validation import answer_scorer, val_data_config

    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["data"] = {"format": "qa", "train": [str(tmp_path / "train")], "val": [str(tmp_path / "test")],
                   "options": {"prompt": QUESTION}}
    cfg["train"]["val_every"] = 1
    exact = answer_scorer(val_data_config(config_from_dict(cfg).data), "accuracy", None)
    assert (exact.task.metric, exact.task.headline) == ("exact", "accuracy")
    exact_metrics, exact_predictions = eval_custom(from_tar.final_dir, [str(tmp_path / "test")],
                                                   tmp_path / "eval-tar-exact", "--metric", "exact")
    assert exact_metrics["metric"] == "exact" and exact.task.summarize(exact_predictions) == exact_metrics
    assert [s.reference for s in exact.samples] == [p["reference"] for p in exact_predictions]
    scorer = answer_scorer(val_data_config(config_from_dict(cfg).data), "cider", None)
    assert [s.prompt for s in scorer.samples] == [p["prompt"] for p in recorded[1]]  # (ids: each shard alone)
    assert scorer.higher_is_better and scorer.task.summarize(recorded[1]) == recorded[0]
    # data.val_options.prompt asks the val shards another question than the one the folder records (docs say so)
    cfg["data"]["val_options"] = {"prompt": "Which number?"}
    scorer = answer_scorer(val_data_config(config_from_dict(cfg).data), "cider", None)
    assert {s.prompt for s in scorer.samples} == {"<image>\nWhich number?"}
    old = tmp_path / "old-folder"
    shutil.copytree(from_tar.final_dir, old)
    config = json.loads((old / "config.json").read_text())
    del config["caption_prompt"]
    (old / "config.json").write_text(json.dumps(config))
    metrics, predictions = eval_custom(old, [str(tmp_path / "test")], tmp_path / "eval-tar-old")
    assert ("the model folder does not record the question its training asked WebDataset shards' captions (a folder "
            f"saved before 2026-12-03): 6 captioned samples of {tmp_path / 'test'} are asked the default; "
            "--caption-prompt TEXT asks the one it was trained with") in caplog.text
    assert (metrics, [(p["id"], p["prediction"]) for p in predictions]) == summaries[1]
    assert {p["prompt"] for p in predictions} == {f"<image>\n{CAPTION_PROMPT}"}
    (old / "config.json").write_text(json.dumps({**config, "caption_prompt": 5}))
    capsys.readouterr()
    assert main(["eval", "--model", str(old), "--task", "custom", "--data", str(tmp_path / "test"),
                 "--output", str(tmp_path / "eval-tar-bad")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"modrwkv eval: error: {old / 'config.json'}: 'caption_prompt' must be a string or null, got 5"]
    # a run asked the recorded question resumes with it given, not with another one
    again = eval_custom(from_tar.final_dir, [str(tmp_path / "test")], tmp_path / "eval-tar-recorded",
                        "--caption-prompt", QUESTION)
    assert again == recorded
    capsys.readouterr()
    assert main(["eval", "--model", str(from_tar.final_dir), "--task", "custom", "--data", str(tmp_path / "test"),
                 "--output", str(tmp_path / "eval-tar-recorded"), "--caption-prompt", CAPTION_PROMPT,
                 "--max-new-tokens", "4"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"modrwkv eval: error: {tmp_path / 'eval-tar-recorded'} holds predictions of a different run: benchmark data; "
        "choose another --output, or remove the folder to start over"]
    assert main(["eval", "--model", str(from_jsonl.final_dir), "--task", "custom", "--data", str(asked),
                 "--output", str(tmp_path / "eval-refused"), "--caption-prompt", QUESTION]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"modrwkv eval: error: {asked}: --caption-prompt applies to WebDataset .tar shards, folders of class "
        "folders, Hugging Face metadata folders, tables of media rows and hub Parquet files of media and labels or "
        "captions (the question their captioned samples and labelled files are asked); this file is none of them"]
    check_init_reads_qa_folder(tmp_path / "test", tmp_path / "init.yaml", capsys, usable=6)


def test_a_folder_keeps_its_record_of_the_caption_question_unless_a_run_asked_captions(tmp_path, capsys, caplog):
    """config.json's caption_prompt is written by a run that read captioned tar samples (media + .txt) only;
    otherwise the folder keeps what the one it started from had: the question, null (the default), or no
    record at all (a folder saved before 2026-12-03), which a re-save (from_pretrained + save_pretrained,
    the transformers wrapper, a stage 2 from it, merge-lora) leaves out, so that eval still warns."""
    from modrwkv.hf_integration import ModRWKVForCausalLM
    from modrwkv.multimodal import ModRWKV

    records = digit_shards(tmp_path / "digits", tmp_path / "captions", 8, 1)
    jsonl = write_jsonl(tmp_path / "digits" / "train.jsonl", records)
    # a shard of qa .json records, each asking its own question: none is asked data.options.prompt
    (tmp_path / "records").mkdir()
    write_tar(tmp_path / "records" / "0.tar", [member for r in records for member in (
        (f"{r['id']}.png", (tmp_path / "digits" / r["image"]).read_bytes()),
        (f"{r['id']}.json", json.dumps({"question": "Which digit?", "answer": r["answer"]}).encode()))])

    def trained(name: str, data: Path, options: dict, init_from: Path | None = None, **settings) -> Path:
        cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
        if init_from is not None:
            cfg["model"] = {"init_from": str(init_from), "ctx_len": 64}
        cfg["data"] = {"format": "qa", "train": [str(data)], "options": options}
        cfg["train"].update(max_steps=1, warmup_steps=0, batch_size=4, micro_batch_size=4, **settings)
        cfg["output"].update(dir=str(tmp_path / name), save_every=0)
        return train(cfg).final_dir

    def record(folder: Path) -> dict:
        return {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if k == "caption_prompt"}

    asked = trained("asked", tmp_path / "captions", {"prompt": QUESTION})
    assert record(asked) == {"caption_prompt": QUESTION}
    # .json records: a fresh run records the default's null, a stage 2 keeps stage 1's question
    assert record(trained("records", tmp_path / "records", {"prompt": "Unasked?"})) == {"caption_prompt": None}
    stage2 = trained("records-2", tmp_path / "records", {"prompt": "Unasked?"}, asked)
    assert record(stage2) == {"caption_prompt": QUESTION}
    old = tmp_path / "old"
    shutil.copytree(asked, old)
    config = json.loads((old / "config.json").read_text())
    del config["caption_prompt"]
    (old / "config.json").write_text(json.dumps(config))
    ModRWKV.from_pretrained(old).save_pretrained(tmp_path / "resaved")
    ModRWKVForCausalLM.from_pretrained(old).save_pretrained(tmp_path / "resaved-hf")
    assert record(tmp_path / "resaved") == record(tmp_path / "resaved-hf") == {}
    assert record(trained("old-records", tmp_path / "records", {"prompt": "Unasked?"}, old)) == {}
    lora = trained("old-lora", jsonl, {}, old, stage="lora", lora={"rank": 2, "targets": ["att.key"]})
    assert main(["merge-lora", str(lora), str(tmp_path / "merged")]) == 0
    assert record(tmp_path / "merged") == {}
    caplog.clear()
    eval_custom(tmp_path / "merged", [str(tmp_path / "captions")], tmp_path / "eval-merged")
    assert ("the model folder does not record the question its training asked WebDataset shards' captions (a folder "
            f"saved before 2026-12-03): 8 captioned samples of {tmp_path / 'captions'} are asked the default; "
            "--caption-prompt TEXT asks the one it was trained with") in caplog.text
    # a stage 2 from the old folder that asks captions records its question, and eval asks it without a warning
    again = trained("old-asked", tmp_path / "captions", {"prompt": QUESTION}, old)
    assert record(again) == {"caption_prompt": QUESTION}
    caplog.clear()
    _, predictions = eval_custom(again, [str(tmp_path / "captions")], tmp_path / "eval-again")
    assert "does not record the question" not in caplog.text
    assert {p["prompt"] for p in predictions} == {f"<image>\n{QUESTION}"}


def wav_bytes(seconds: float, frequency: float, rate: int = 16000) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate, format="WAV",
                    subtype="PCM_16")
    return buffer.getvalue()


def test_an_audio_tar_reads_and_scores_as_its_asr_manifest(tmp_path):
    """key.wav + key.txt (the transcript; its metadata .json not read, though it has `text`), and key.flac +
    key.json holding the transcript (Emilia's layout), read as the manifest of the same clips."""
    import soundfile

    sentences = ["two red cats jump", "nine white bears swim", "five blue fish sit"]
    clips = [wav_bytes(0.5 + i / 4, 220 * (i + 1)) for i in range(3)]
    folder = tmp_path / "speech"
    folder.mkdir()
    for index, clip in enumerate(clips):
        (folder / f"{index}.wav").write_bytes(clip)
    flac = io.BytesIO()
    soundfile.write(flac, soundfile.read(io.BytesIO(clips[2]))[0], 16000, format="FLAC")
    (folder / "2.flac").write_bytes(flac.getvalue())
    manifest = write_jsonl(folder / "test.jsonl", [{"audio_filepath": f"{i}.wav", "text": s, "id": f"{i:03d}"}
                                                   for i, s in enumerate(sentences[:2])]
                           + [{"audio_filepath": "2.flac", "text": sentences[2], "id": "002", "duration": 1.0}])
    write_tar(tmp_path / "speech.tar", [
        ("000.wav", clips[0]), ("000.txt", sentences[0].encode() + b"\n"), ("000.json", b'{"text": "metadata"}'),
        ("001.wav", clips[1]), ("001.txt", sentences[1].encode()),
        ("002.flac", flac.getvalue()), ("002.json", json.dumps({"id": "002", "wav": "002.flac", "text": sentences[2],
                                                                  "duration": 1.0, "speaker": "x"}).encode())])
    assert detect_format(tmp_path / "speech.tar") == "asr"
    expected, read = list(AsrManifestReader(manifest, on_error="raise")), list(AsrManifestReader(tmp_path / "speech.tar",
                                                                                                 on_error="raise"))
    assert len(read) == 3
    for got, want in zip(read, expected, strict=True):
        assert got.messages == want.messages and got.meta == want.meta and isinstance(got.audios[0], TarMember)
        assert np.array_equal(load_audio(got.audios[0]), load_audio(want.audios[0]))
    scores = []
    for data in (manifest, tmp_path / "speech.tar"):
        task = CustomTask()
        samples = task.load(data, "all")
        assert [s.reference["answers"] for s in samples] == [[s] for s in sentences]
        scores.append(task.summarize([{"reference": s.reference, "prediction": p} for s, p in zip(
            samples, ["two red cats jump", "nine white bears sit", "five blue fish sit"], strict=True)]))
    assert scores[0] == scores[1] and scores[0]["wer"] == pytest.approx(100 / 12)


def test_media_stay_in_the_tar_until_a_sample_is_built(tmp_path, monkeypatch):
    """Listing the samples of a 19 MB tar of noise PNGs reads its headers and small text members: no media
    member is read, and what is held is a small fraction of the file; each image reads back as written.
    Counting the samples reads no record."""
    images = noise_pngs(96)
    members = [member for index, image in enumerate(images)
               for member in ((f"{index:04d}.png", image), (f"{index:04d}.txt", b"noise"))]
    path = tmp_path / "noise.tar"
    write_tar(path, members)
    size = path.stat().st_size
    reads = []
    monkeypatch.setattr(TarMember, "read", lambda self: reads.append(self.name))
    samples, held = read_qa_holding(path)
    assert len(samples) == 96 and size > 18e6 and reads == []
    assert held < size / 20, f"{held} bytes held after reading a {size}-byte tar"
    monkeypatch.undo()
    check_images_read_back(samples, images)
    monkeypatch.setattr("modrwkv.data.readers.webdataset._record", lambda *a: pytest.fail("a record built to count"))
    assert QAReader(path).count_records() == 96


def test_bad_samples_are_skipped_with_their_reason_and_a_bad_member_is_named(tmp_path, capsys):
    names, _ = write_digit_images(tmp_path / "d")
    png = (tmp_path / "d" / "images" / names[0]).read_bytes()
    path = tmp_path / "shard-00000.tar"
    write_tar(path, [("000000040.png", png), ("000000040.txt", b"zero"),
                     ("000000041.txt", b"a caption without its image"), ("000000041.json", b"{}"),
                     ("000000042.jpg", b"not an image at all"), ("000000042.txt", b"zero"),
                     ("000000043.png", png), ("000000043.json", b'{"caption": "zero", "text": "zero"}'),
                     ("000000044.png", png), ("000000044.txt", b" \n"),
                     ("000000045.png", png), ("000000045.txt", b"zero"), ("000000045.json", b"{not json"),
                     ("000000046.png", png), ("000000046.json", b'{"question": "?", "answer": "0", "image": "0.png"}')])
    reader = QAReader(path, verify_media=True, max_examples=10)
    assert len(list(reader)) == 1 and dict(reader.report.skipped) == {
        "missing_media": 1, "unreadable_media": 1, "missing_field": 1, "empty_answer": 1, "bad_json": 1, "wrong_type": 1}
    errors = {str(e).split(": ")[0].rsplit(":", 1)[1]: str(e) for e in reader.report.examples}
    assert errors["000000046"] == (f"{path}:000000046: 000000046.json has 'image', but the sample's image is its member "
                                   "000000046.png: leave 'image' out of the .json")
    assert errors["000000041"] == (f"{path}:000000041: no image, audio or video member (the sample's members: "
                                   "000000041.txt, 000000041.json)")
    assert errors["000000042"].startswith(f"{path}:000000042: 000000042.jpg: image does not decode: not a recognised "
                                          "image format")
    assert errors["000000043"].startswith(f"{path}:000000043: no text: no .txt member (with its image or video, a "
                                          "caption), no .cls member (a label)")
    # when the sample is built (training, evaluation), the member is named where it does not decode
    [_, bad, *_] = QAReader(path, on_error="skip", log_limit=0)  # without verify_media it is kept until decoded
    with pytest.raises(MediaError, match=r"^cannot decode image 000000042\.jpg \(19 bytes\): not a recognised image"):
        load_image(bad.images[0])


@pytest.mark.parametrize("damage", ["inside a member", "at a member's end", "a garbled header", "gzip", "not a tar",
                                    ".tar.gz", "bzip2"])
def test_a_damaged_tar_is_one_line_naming_it(tmp_path, capsys, damage):
    names, _ = write_digit_images(tmp_path / "d")
    png = (tmp_path / "d" / "images" / names[0]).read_bytes()
    good = tmp_path / "good.tar"
    write_tar(good, [("0.png", png), ("0.txt", b"zero"), ("1.png", png), ("1.txt", b"zero")])
    data = good.read_bytes()
    one_sample = 3 * 512 + -(-len(png) // 512) * 512  # two headers, the PNG's blocks, "zero"'s block
    path = tmp_path / ("00000.tar.gz" if damage == ".tar.gz" else "00000.tar")
    expected = {"inside a member": "the tar is damaged or cut short after 1.png (unexpected end of data)",
                "at a member's end": "the tar is cut short after 1.txt: it ends without the zero blocks that close a "
                                     "tar (an interrupted download or writer?)",
                "a garbled header": f"the tar is damaged after 0.txt: the bytes at offset {one_sample} are no tar "
                                    "header",
                "gzip": "a gzip-compressed tar: a sample's media are read from their place in the file when the "
                        "sample is built, which a compressed stream does not allow; decompress it to a .tar",
                ".tar.gz": "a gzip-compressed tar: a sample's media are read from their place in the file when the "
                           "sample is built, which a compressed stream does not allow; decompress it to a .tar",
                "bzip2": "a bzip2-compressed tar: a sample's media are read from their place in the file when the "
                         "sample is built, which a compressed stream does not allow; decompress it to a .tar",
                "not a tar": "not a readable tar file (invalid header)"}[damage]
    if damage == "inside a member":
        path.write_bytes(data[: one_sample + 512 + 100])
    elif damage == "at a member's end":
        path.write_bytes(data[: 2 * one_sample])
    elif damage == "a garbled header":
        path.write_bytes(data[:one_sample] + b"garbage!" * 64 + data[one_sample + 512:])
    elif damage in ("gzip", ".tar.gz"):
        import gzip

        path.write_bytes(gzip.compress(data))
    elif damage == "bzip2":
        import bz2

        path.write_bytes(bz2.compress(data))
    else:
        path.write_bytes(b'{"question": "not a tar"}\n' * 40)
    with pytest.raises(DataError, match="^" + __import__("re").escape(f"{path}: {expected}") + "$"):
        list(QAReader(path))
    assert main(["init", "--data", str(path), "--yes", "--output", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"modrwkv init: error: {path}: {expected}"]
    assert main(["eval", "--model", str(tmp_path), "--task", "custom", "--output", str(tmp_path / "out"),
                 "--data", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"modrwkv eval: error: {path}: {expected}"


def test_a_tar_with_a_samples_members_apart_is_one_line_naming_it(tmp_path, capsys):
    """`tar -cf s.tar *.png *.txt` puts every image before every caption: one file-level line naming the
    file and the first key whose members come back, not each sample cut into two bad records."""
    png = write_digit_images(tmp_path / "d")[0]
    png = (tmp_path / "d" / "images" / png[0]).read_bytes()
    path = tmp_path / "s.tar"
    write_tar(path, [("a.png", png), ("b.png", png), ("a.txt", b"zero"), ("b.txt", b"zero")])
    expected = (f"{path}: the members of sample a are not one after another (a.txt comes after other samples' "
                "members): a WebDataset shard holds each sample's members together, in key order; write it so "
                "(`tar --sort=name -cf shard.tar ...`, or webdataset's TarWriter)")
    # the first sample's half (a.png alone) is a bad record before a.txt is reached: the file's line is given
    # instead, whether bad records are skipped or raised, and no half-sample is skipped before it
    for on_error in ("skip", "raise"):
        reader = QAReader(path, on_error=on_error)
        with pytest.raises(DataError, match="^" + re.escape(expected) + "$"):
            list(reader)
        assert reader.report.num_skipped == 0
    with pytest.raises(BenchmarkFileError, match="^" + re.escape(expected) + "$"):
        CustomTask().load(path, "all")
    assert main(["init", "--data", str(path), "--yes", "--output", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"modrwkv init: error: {expected}"]
    assert main(["eval", "--model", str(tmp_path), "--task", "custom", "--output", str(tmp_path / "out"),
                 "--data", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"modrwkv eval: error: {expected}"
    # init looks at up to 100 samples for the format: the file's line, not "no usable sample among the first 100"
    write_tar(path, [(f"{k:03d}.png", png) for k in range(101)] + [(f"{k:03d}.txt", b"zero") for k in range(101)])
    assert main(["init", "--data", str(path), "--yes", "--output", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"modrwkv init: error: {path}: the members of sample 000 "
                                                            "are not one after another (000.txt comes after other "
                                                            f"samples' members){expected.split('members)', 1)[1]}"]
    # members apart whose first halves make records (the .cls members last) are named where they come back
    write_tar(path, [("a.png", png), ("a.txt", b"zero"), ("b.png", png), ("b.txt", b"zero"), ("a.cls", b"0"),
                     ("b.cls", b"0")])
    with pytest.raises(DataError, match=re.escape("the members of sample a are not one after another (a.cls comes")):
        list(QAReader(path, on_error="raise"))
    # a sample that is bad on its own in a tar in order is named as itself
    write_tar(path, [("a.png", png), ("a.txt", b"zero"), ("b.png", png), ("c.png", png), ("c.txt", b"zero")])
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}:b: no text: no .txt member"):
        list(QAReader(path, on_error="raise"))
    # the same members in key order (`tar --sort=name`) read as two samples
    write_tar(path, [("a.png", png), ("a.txt", b"zero"), ("b.png", png), ("b.txt", b"zero")])
    assert [s.source for s in QAReader(path, on_error="raise")] == [f"{path}:a", f"{path}:b"]


def test_finished_keys_are_held_as_hashes_and_a_shared_hash_is_no_false_alarm(tmp_path, monkeypatch):
    """The keys of the samples read are remembered by a 64-bit hash (8 bytes, where a set of 9-character str
    keys holds ~92 a key: 92 MB a million samples, measured with tracemalloc); two keys that share one are
    told apart by the tar's members, so a tar in order reads whole and one out of order is named, every
    key's hash the same or not."""
    from modrwkv.data.readers import webdataset

    names = [f"{i:09d}" for i in range(100000)]
    finished = webdataset._FinishedKeys()
    tracemalloc.start()
    for name in names:
        finished.add(name)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert all(finished.may_hold(name) for name in names) and not finished.may_hold("x")
    assert held < 16 * len(names), f"{held} bytes for {len(names)} keys"
    ordered = [(f"{k}.{ext}", b"x") for k in ("a", "b", "c") for ext in ("png", "txt")]
    apart = [(f"{k}.png", b"x") for k in ("a", "b")] + [(f"{k}.txt", b"x") for k in ("a", "b")]
    for collide in (False, True):
        if collide:
            monkeypatch.setattr(webdataset, "_key_hash", lambda key: 7)
        write_tar(tmp_path / "ordered.tar", ordered)
        assert [s.source.rsplit(":", 1)[1] for s in QAReader(tmp_path / "ordered.tar", on_error="raise")] == \
            ["a", "b", "c"]
        write_tar(tmp_path / "apart.tar", apart)
        with pytest.raises(DataError, match=re.escape("the members of sample a are not one after another")):
            list(QAReader(tmp_path / "apart.tar", on_error="raise"))


def test_listing_holds_no_member_headers(tmp_path, monkeypatch):
    """tarfile keeps the TarInfo of every member read (~440 bytes: 1.3 GB for a million-sample tar); the
    reader keeps none beyond the one in hand, however many members the tar has."""
    held = []
    next_member = tarfile.TarFile.next

    def spy(self):
        held.append(len(self.members))
        return next_member(self)

    monkeypatch.setattr(tarfile.TarFile, "next", spy)
    path = tmp_path / "s.tar"
    write_tar(path, [(f"{i:04d}.{ext}", b"x") for i in range(200) for ext in ("png", "txt")])
    assert len(list(QAReader(path, on_error="raise"))) == 200  # (b"x" is no image, but nothing is decoded)
    assert len(held) == 402 and max(held) <= 1  # (opening the tar reads its first member)


def test_a_first_member_named_like_a_compression_magic_is_read(tmp_path):
    """A plain tar whose first member is BZh9.png starts with bzip2's magic bytes "BZh": it is a tar."""
    names, _ = write_digit_images(tmp_path / "d")
    png = (tmp_path / "d" / "images" / names[0]).read_bytes()
    path = tmp_path / "s.tar"
    write_tar(path, [("BZh9.png", png), ("BZh9.txt", b"zero")])
    assert path.read_bytes().startswith(b"BZh9")
    [sample] = QAReader(path, on_error="raise")
    assert sample.source == f"{path}:BZh9" and sample.images[0].read() == png


def test_a_link_member_is_a_bad_record_naming_the_link(tmp_path):
    """GNU tar and tarfile.add store a file hard-linked to one archived before (deduplicated images) as a link
    to it, with no bytes of its own: its sample is a bad record naming the link and how to write the tar,
    where the sample lost the member unnoticed (no image, or one image of two)."""
    names, _ = write_digit_images(tmp_path / "d")
    folder = tmp_path / "files"
    folder.mkdir()
    shutil.copy(tmp_path / "d" / "images" / names[0], folder / "000.png")
    shutil.copy(tmp_path / "d" / "images" / names[1], folder / "002.png")
    (folder / "001.png").hardlink_to(folder / "000.png")
    (folder / "002.1.png").symlink_to("000.png")
    (folder / "003.png").hardlink_to(folder / "002.png")
    for key, caption in (("000", "zero"), ("001", "zero"), ("002", "one"), ("004", "one")):
        (folder / f"{key}.txt").write_text(caption)
    (folder / "003.txt").symlink_to("002.txt")
    shutil.copy(folder / "002.png", folder / "004.png")
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as archive:
        for name in ("000.png", "000.txt", "001.png", "001.txt", "002.png", "002.1.png", "002.txt", "003.png",
                     "003.txt", "004.png", "004.txt"):
            archive.add(folder / name, arcname=name)
    with tarfile.open(path) as archive:  # (what tarfile wrote: links, as GNU tar writes them)
        assert [m.name for m in archive if not m.isfile()] == ["001.png", "002.1.png", "003.png", "003.txt"]
    reader = QAReader(path, max_examples=10, log_limit=0)
    assert [s.source for s in reader] == [f"{path}:000", f"{path}:004"]
    assert dict(reader.report.skipped) == {"missing_media": 3}
    assert [str(e) for e in reader.report.examples] == [
        f"{path}:001: 001.png is a hard link to 000.png, which is not read (a member's bytes are read from its own "
        "place in the tar); write the tar with the files themselves (`tar --hard-dereference -cf ...`)",
        f"{path}:002: 002.1.png is a symbolic link to 000.png, which is not read (a member's bytes are read from its "
        "own place in the tar); write the tar with the files themselves (`tar --dereference -cf ...`)",
        f"{path}:003: 003.png is a hard link to 002.png, which is not read (a member's bytes are read from its own "
        "place in the tar); write the tar with the files themselves (`tar --hard-dereference -cf ...`)"]
    # a .txt link alone: the sample lacks its text
    write_links = tmp_path / "t.tar"
    with tarfile.open(write_links, "w") as archive:
        for name in ("002.png", "002.txt", "004.png"):
            archive.add(folder / name, arcname=name)
        archive.add(folder / "003.txt", arcname="004.txt")
    reader = QAReader(write_links, max_examples=10, log_limit=0)
    assert [s.source for s in reader] == [f"{write_links}:002"] and dict(reader.report.skipped) == {"missing_field": 1}
    assert str(reader.report.examples[0]).startswith(f"{write_links}:004: 004.txt is a symbolic link to 002.txt, ")


def test_compound_extensions_other_than_a_number_are_not_media(tmp_path):
    """WebDataset reads key.seg.png / key.depth.png beside key.jpg as separate fields: the record's image is
    key.jpg alone; numbered members (key.0.png, key.1.png) are several images."""
    names, _ = write_digit_images(tmp_path / "d")
    pngs = [(tmp_path / "d" / "images" / n).read_bytes() for n in names[:3]]
    path = tmp_path / "s.tar"
    write_tar(path, [("000.png", pngs[0]), ("000.seg.png", pngs[1]), ("000.depth.png", pngs[1]),
                     ("000.mask.png", pngs[1]), ("000.txt", b"zero"),
                     ("001.0.png", pngs[1]), ("001.1.png", pngs[2]),
                     ("001.json", json.dumps({"question": "<image> <image> which?", "answer": "1 2"}).encode())])
    first, second = QAReader(path, on_error="raise")
    assert [i.name for i in first.images] == ["000.png"] and first.images[0].read() == pngs[0]
    assert [i.read() for i in second.images] == pngs[1:]


def test_shards_that_reuse_keys_are_told_apart_by_file_in_eval(tmp_path):
    """Shards each counting their keys from 000: with several files a sample's id is "file name:key", as a
    JSONL record's place is "file name:N"; a single tar's ids stay its keys, and a .json's own id is kept."""
    names, _ = write_digit_images(tmp_path / "d")
    png = (tmp_path / "d" / "images" / names[0]).read_bytes()
    (tmp_path / "shards").mkdir()
    for shard in ("00000", "00001"):
        record = {"question": "Which?", "answer": "0", "id": f"own-{shard}"}
        write_tar(tmp_path / "shards" / f"{shard}.tar", [("000.png", png), ("000.txt", b"zero"), ("001.png", png),
                                                         ("001.json", json.dumps(record).encode())])
    samples = CustomTask().load(tmp_path / "shards", "all")
    assert [s.id for s in samples] == ["00000.tar:000", "own-00000", "00001.tar:000", "own-00001"]
    assert [s.id for s in CustomTask().load(tmp_path / "shards" / "00001.tar", "all")] == ["000", "own-00001"]


def test_a_member_read_survives_pickle_and_copy():
    """The bytes a TarMember reads carry the member's name through a DataLoader worker's pickle and a copy."""
    import copy
    import pickle

    from modrwkv.data.readers.base import NamedBytes

    data = NamedBytes(b"\x89PNG...", "000000042.png")
    for clone in (pickle.loads(pickle.dumps(data)), copy.copy(data), copy.deepcopy(data)):
        assert type(clone) is NamedBytes and clone == b"\x89PNG..." and clone.name == "000000042.png"


def test_a_brace_list_of_shards_is_named_with_a_wildcard_to_give(tmp_path, capsys):
    """webdataset's `shard-{000..001}.tar` is not expanded (the shell leaves it when quoted): one line saying
    so, with the wildcard to give instead, rather than "cannot open: [Errno 2]"."""
    digit_shards(tmp_path / "digits", tmp_path / "shards", 4, 2)
    pattern = str(tmp_path / "shards" / "{00000..00001}.tar")
    expected = (f"--data: no file {pattern}: brace lists (webdataset's shard-{{000..099}}.tar) are not expanded; give "
                f"a wildcard ({str(tmp_path / 'shards' / '*.tar')!r}) or the folder")
    assert main(["init", "--data", pattern, "--yes", "--output", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"modrwkv init: error: {expected}"
    assert main(["eval", "--model", str(tmp_path), "--task", "custom", "--output", str(tmp_path / "out"),
                 "--data", pattern]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"modrwkv eval: error: {expected}"
    assert len(expand_paths([str(tmp_path / "shards" / "*.tar")], "--data")) == 2  # the wildcard it names


def test_a_member_too_large_to_decode_is_named_once(tmp_path, monkeypatch):
    from PIL import Image

    names, _ = write_digit_images(tmp_path / "d")
    png = (tmp_path / "d" / "images" / names[0]).read_bytes()
    path = tmp_path / "s.tar"
    write_tar(path, [("000.png", png), ("000.txt", b"zero")])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # the digits are 8x8
    reader = QAReader(path, verify_media=True, log_limit=0)
    assert list(reader) == [] and dict(reader.report.skipped) == {"unreadable_media": 1}
    [error] = reader.report.examples
    assert str(error).startswith(f"{path}:000: image does not decode: image 000.png ({len(png)} bytes) has 8x8 = 64 "
                                 "pixels, more than the 40 allowed")


def read_as_twins(tar: Path, jsonl: Path, predictions: list[str], caption_prompt: str | None = None,
                  **options) -> list[list]:
    """What `modrwkv eval --task custom` makes of a tar (its captions asked `caption_prompt`) and of its JSONL
    twin (media as files beside it): per sample its id, prompt, context, reference and media bytes, and the
    summary of `predictions` scored against each. The two must be equal."""
    views = []
    for data, given in ((tar, {"caption_prompt": caption_prompt}), (jsonl, {})):
        task = CustomTask(**options, **given)
        samples = task.load(data, "all")
        media = [[item.read() if isinstance(item, TarMember) else Path(item).read_bytes() for item in items]
                 for s in samples for items in (s.images, s.audio, s.videos)]
        records = [{"reference": s.reference, "prediction": p} for s, p in zip(samples, predictions, strict=True)]
        views.append([[(s.id, s.prompt, s.context, s.reference) for s in samples], media, task.summarize(records),
                      [task.score(r) for r in records]])
    assert views[0] == views[1]
    return views[0]


def test_video_captions_read_and_score_as_their_jsonl(tmp_path):
    """video2dataset's layout, key.mp4 + key.txt (with the clip's audio as key.wav beside it, or not): a
    caption asked "Write a short caption for the video." (or the caption question given), the video (and
    audio) the record's, exactly as the JSONL records of the same clips on disk."""
    av = pytest.importorskip("av", reason="video needs PyAV: pip install 'modrwkv[video]'")
    from modrwkv.encoders.media import load_video

    def clip(shade: int) -> bytes:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as container:
            stream = container.add_stream("mpeg4", rate=4)
            stream.height = stream.width = 16
            stream.pix_fmt = "yuv420p"
            for k in range(4):
                frame = np.full((16, 16, 3), shade + 20 * k, dtype=np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        return buffer.getvalue()

    folder = tmp_path / "clips"
    folder.mkdir()
    videos, sound = [clip(40), clip(120)], wav_bytes(0.5, 330)
    captions = ["a dark square brightens", "a grey square brightens"]
    for index, video in enumerate(videos):
        (folder / f"{index}.mp4").write_bytes(video)
    (folder / "1.wav").write_bytes(sound)
    write_tar(tmp_path / "clips.tar", [("000.mp4", videos[0]), ("000.txt", captions[0].encode()),
                                       ("000.json", b'{"url": "https://example.com/0.mp4"}'),
                                       ("001.mp4", videos[1]), ("001.wav", sound), ("001.txt", captions[1].encode())])
    question = "Write a short caption for the video."  # the documented default for a video, written out
    twin = [{"video": "clips/0.mp4", "question": question, "answer": captions[0], "id": "000"},
            {"video": "clips/1.mp4", "audio": "clips/1.wav", "question": question, "answer": captions[1], "id": "001"}]
    jsonl = write_jsonl(tmp_path / "clips.jsonl", twin)
    assert detect_format(tmp_path / "clips.tar") == "qa"
    expected, read = list(QAReader(jsonl, on_error="raise")), list(QAReader(tmp_path / "clips.tar", on_error="raise"))
    for got, want in zip(read, expected, strict=True):
        assert got.messages == want.messages and got.meta == {**want.meta, "captioned": True}
        assert [v.read() for v in got.videos] == [Path(v).read_bytes() for v in want.videos]
    assert read[1].messages[0].content == f"<video>\n<audio>\n{question}"
    frames = [load_video(v.videos[0]) for v in (read[0], expected[0])]
    assert [np.asarray(f.image).tolist() for f in frames[0]] == [np.asarray(f.image).tolist() for f in frames[1]]
    # (a record with audio suggests wer, one without exact, in the tar as in the JSONL: the caption's metric given)
    [prompts, media, summary, scores] = read_as_twins(tmp_path / "clips.tar", jsonl, [captions[0], "a cat"],
                                                      metric="exact")
    assert [p for _, p, _, _ in prompts] == [f"<video>\n{question}", f"<video>\n<audio>\n{question}"]
    assert media == [[], [], [videos[0]], [], [sound], [videos[1]]]
    assert summary == {"accuracy": 50.0, "metric": "exact"} and scores == [{"correct": True}, {"correct": False}]
    # asked another question (a run trained with data.options.prompt): the JSONL asking it
    asked = write_jsonl(tmp_path / "asked.jsonl", [{**r, "question": "What happens?"} for r in twin])
    [prompts, *_] = read_as_twins(tmp_path / "clips.tar", asked, [captions[0], "a cat"], metric="exact",
                                  caption_prompt="What happens?")
    assert prompts[0][1] == "<video>\nWhat happens?"


def test_conversation_records_in_a_tar_read_and_score_as_their_jsonl(tmp_path):
    """A .json member holding a LLaMA-Factory ShareGPT record (a system prompt, earlier turns) or a LLaVA
    one is asked with its context and scored (accepted answers, choices) as the JSONL of the same records
    with the images on disk; the tar's images are its members, in member order."""
    from modrwkv.data.readers import SharegptReader

    names, _ = write_digit_images(tmp_path / "d")
    pngs = [(tmp_path / "d" / "images" / n).read_bytes() for n in names[:3]]
    sharegpt = [
        {"messages": [{"role": "user", "content": "<image>Which digit?"}, {"role": "assistant", "content": "0"},
                      {"role": "user", "content": "<image>And this one?\nA. one\nB. seven"},
                      {"role": "assistant", "content": "A"}],
         "system": "You read handwritten digits.", "choices": ["one", "seven"], "id": "s0"},
        {"messages": [{"role": "user", "content": "<image>Which digit is this?"},
                      {"role": "assistant", "content": "2"}], "system": "You read digits.",
         "answers": ["2", "two", "2"], "id": "s1"}]
    write_tar(tmp_path / "sharegpt.tar", [("a.0.png", pngs[0]), ("a.1.png", pngs[1]),
                                          ("a.json", json.dumps(sharegpt[0]).encode()),
                                          ("b.png", pngs[2]), ("b.json", json.dumps(sharegpt[1]).encode())])
    twin = write_jsonl(tmp_path / "d" / "sharegpt.jsonl", [
        {**sharegpt[0], "images": [f"images/{n}" for n in names[:2]]},
        {**sharegpt[1], "images": [f"images/{names[2]}"]}])
    assert detect_format(tmp_path / "sharegpt.tar") == detect_format(twin) == "sharegpt"
    expected, read = list(SharegptReader(twin, on_error="raise")), list(SharegptReader(tmp_path / "sharegpt.tar",
                                                                                        on_error="raise"))
    for got, want in zip(read, expected, strict=True):
        assert got.messages == want.messages and [i.read() for i in got.images] == [Path(i).read_bytes()
                                                                                     for i in want.images]
    [prompts, media, summary, scores] = read_as_twins(tmp_path / "sharegpt.tar", twin, ["A", "two"], metric="exact")
    assert prompts[0] == ("s0", "<image>And this one?\nA. one\nB. seven", [
        {"role": "system", "content": "You read handwritten digits."},
        {"role": "user", "content": "<image>Which digit?"}, {"role": "assistant", "content": "0"}],
        {"metric": "exact", "answers": ["A"], "choices": ["one", "seven"]})
    assert media[:3] == [pngs[:2], [], []] and summary == {"accuracy": 100.0, "metric": "exact"}
    llava = {"conversations": [{"from": "human", "value": "<image>\nWhich digit?"}, {"from": "gpt", "value": "1"}],
             "id": "l0"}
    write_tar(tmp_path / "llava.tar", [("c.png", pngs[1]), ("c.json", json.dumps(llava).encode())])
    twin = write_jsonl(tmp_path / "d" / "llava.jsonl", [{**llava, "image": f"images/{names[1]}"}])
    [prompts, media, summary, _] = read_as_twins(tmp_path / "llava.tar", twin, ["1"])
    assert prompts == [("l0", "<image>\nWhich digit?", [], {"metric": "exact", "answers": ["1"]})]
    assert media == [[pngs[1]], [], []] and summary == {"accuracy": 100.0, "metric": "exact"}


def test_several_audio_members_of_one_key(tmp_path):
    """key.0.wav + key.1.wav with a .json record are its audios in member order (a ShareGPT record's
    `audios`), read and scored as the JSONL of the same record; with a .txt alone they are no ASR record
    (which has one audio), named as the manifest of the same two clips is refused."""
    from modrwkv.data.readers import SharegptReader

    low, high = wav_bytes(0.4, 220), wav_bytes(0.4, 880)
    (tmp_path / "0.wav").write_bytes(low)
    (tmp_path / "1.wav").write_bytes(high)
    record = {"conversations": [{"from": "human", "value": "<audio><audio>Which clip is higher?"},
                                {"from": "gpt", "value": "the second"}], "system": "Compare the clips."}
    write_tar(tmp_path / "pairs.tar", [("p.0.wav", low), ("p.1.wav", high), ("p.json", json.dumps(record).encode())])
    twin = write_jsonl(tmp_path / "pairs.jsonl", [{**record, "audios": ["0.wav", "1.wav"]}])
    assert detect_format(tmp_path / "pairs.tar") == "sharegpt"
    [want], [got] = list(SharegptReader(twin, on_error="raise")), list(SharegptReader(tmp_path / "pairs.tar",
                                                                                        on_error="raise"))
    assert got.messages == want.messages and [a.read() for a in got.audios] == [low, high]
    [prompts, media, summary, _] = read_as_twins(tmp_path / "pairs.tar", twin, ["the first"])
    assert prompts == [("1", "<audio><audio>Which clip is higher?",
                        [{"role": "system", "content": "Compare the clips."}],
                        {"metric": "wer", "answers": ["the second"]})]
    assert media == [[], [low, high], []] and summary == {"wer": 50.0, "metric": "wer"}
    # a transcript for two clips: refused, one line naming the sample and its members
    write_tar(tmp_path / "speech.tar", [("u.0.wav", low), ("u.1.wav", high), ("u.txt", b"two clips")])
    reader = AsrManifestReader(tmp_path / "speech.tar", log_limit=0)
    assert list(reader) == [] and dict(reader.report.skipped) == {"wrong_type": 1}
    refusal = ("holds 2 audio items ({}) for one transcript: an ASR record has one audio; clips answered together "
               "are a conversation record's 'audios' list (format: sharegpt)")
    assert str(reader.report.examples[0]) == (f"{tmp_path / 'speech.tar'}:u: 'audio' "
                                              f"{refusal.format('u.0.wav, u.1.wav')}")
    manifest = write_jsonl(tmp_path / "speech.jsonl", [{"audio_filepath": ["0.wav", "1.wav"], "text": "two clips"}])
    reader = AsrManifestReader(manifest, log_limit=0)
    assert list(reader) == [] and dict(reader.report.skipped) == {"wrong_type": 1}
    assert str(reader.report.examples[0]) == f"{manifest}:1: 'audio_filepath' {refusal.format('0.wav, 1.wav')}"


def test_init_names_the_held_out_shard_folder_beside_the_training_one(tmp_path, capsys):
    """img2dataset-style splits are folders of shards (train/, test/): the evaluate line init prints names
    the test folder beside the training folder, as it names test.jsonl beside train.jsonl."""
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(png, format="PNG")
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        write_tar(tmp_path / split / "00000.tar", [(f"{i:09d}{ext}", data) for i in range(4)
                                                  for ext, data in ((".png", png.getvalue()), (".txt", b"red"))])
    assert main(["init", "--data", str(tmp_path / "train"), "--yes", "--device", "cpu",
                 "--output", str(tmp_path / "c.yaml")]) == 0
    evaluate = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("evaluate:"))
    assert evaluate.endswith(f"--data {tmp_path / 'test'}")


def red_tar(path: Path, samples: int) -> None:
    """A tar of `samples` red 8x8 PNGs captioned "red"."""
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(png, format="PNG")
    write_tar(path, [(f"{i:09d}{ext}", data) for i in range(samples)
                     for ext, data in ((".png", png.getvalue()), (".txt", b"red"))])


def test_a_hub_folder_of_several_splits_tars_is_refused_as_parquet_shards_are(tmp_path, capsys, monkeypatch):
    """As test_hub_parquet's folder of several splits' Parquet shards: the same line, with .tar wildcards."""
    monkeypatch.chdir(tmp_path)
    # as the hub keeps a WebDataset repository: every split's shards in one folder
    check_hub_split_shards_refused(Path("cc3m/wds"), ".tar", red_tar, tmp_path / "c.yaml", capsys)
    # a split's own file (train.tar beside test.tar) is a split too; shards of languages are no splits
    for name, splits in {"plain": ["train", "test"], "languages": ["en-00000-of-00001", "fr-00000-of-00001"]}.items():
        Path(name).mkdir()
        for split in splits:
            red_tar(Path(name) / f"{split}.tar", 1)
    with pytest.raises(FileNotFoundError, match=re.escape(
            "holds the splits test.tar, train.tar, each a split's rows, which the folder read whole would mix: give "
            "one split, plain/train.tar to train on")):
        expand_paths(["plain"], "--data")
    assert len(expand_paths(["languages"], "--data")) == 2


@pytest.mark.parametrize("suffix", [".tar", ".parquet"])
def test_a_folder_of_split_folders_of_shards_is_refused_naming_each(tmp_path, monkeypatch, suffix):
    """A hub WebDataset repository's train/00000.tar beside test/00000.tar (or Parquet shards so laid out), given
    as their folder: refused naming each split's folder, rather than read as class folders named train and test."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(tmp_path)
    for split in ("train", "validation"):
        Path("repo", split).mkdir(parents=True)
        if suffix == ".tar":  # beside img2dataset's download statuses, which are no shards
            red_tar(Path("repo", split, "00000.tar"), 1)
            pq.write_table(pa.table({"key": ["000000000"]}), Path("repo", split, "00000.parquet"))
        else:
            pq.write_table(pa.table({"question": ["Which?"], "answer": ["a"]}), Path("repo", split, "00000.parquet"))
    with pytest.raises(FileNotFoundError) as caught:
        expand_paths(["repo"], "data.train")
    assert str(caught.value) == (
        "data.train: repo: holds the splits train/, validation/, each a split's rows, which the folder read whole "
        "would mix: give one split, repo/train to train on (modrwkv init --data, data.train); evaluate on "
        f"repo/validation (modrwkv eval --task custom --data); to read every split together, give repo/*/*{suffix}")
    assert expand_paths(["repo/train"], "data.train") == [f"repo/train/00000{suffix}"]  # the folder it names

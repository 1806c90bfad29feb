"""Weighted data mixtures: `data.train` entries `{path: PATTERN, repeat: R}` (training/config.DataSource),
read per entry (training/data.read_sources) and drawn per pass by training/data.StepBatchSampler."""

import collections
import copy
import io
import json
import logging
import tarfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from modrwkv.cli import main
from modrwkv.data.readers.base import assign_paths
from modrwkv.training import ConfigError, latest_checkpoint, load_config, train
from modrwkv.training.config import DataConfig, DataSource
from modrwkv.training.data import (SourceSpan, StepBatchSampler, describe_mixture, read_sources, read_samples, repeat_count,
                                  val_files_trained_on)

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def qa_records(folder: Path, name: str, n: int, seed: int) -> list[dict]:
    """`n` "what colour?" question-answer records about plain 16x16 PNG images written under `folder`."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        image = f"{name}-{i}.png"
        Image.fromarray(np.zeros((16, 16, 3), np.uint8) + np.array(COLOURS[colour], np.uint8)).save(folder / image)
        records.append({"image": image, "question": "What colour is it?",
                        "answer": colour if i % 2 else f"It is {colour}."})
    return records


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def run_config(tmp_path: Path, name: str, train_files: list, **data) -> dict:
    """configs/tiny-cpu.yaml on qa files, 8 steps of 4 samples, its own output folder."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["data"] = {"format": "qa", "train": train_files, **data}
    cfg["train"].update(max_steps=8, batch_size=4, micro_batch_size=4, warmup_steps=2)
    cfg["output"].update(dir=str(tmp_path / name), save_every=0, log_every=1)
    return cfg


def final_weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.final_dir / "model.safetensors"))


# --- the data a pass holds ------------------------------------------------------------------------------


def test_repeat_counts_are_whole_copies_plus_a_rounded_fraction():
    assert [repeat_count(10, r) for r in (1, 2, 2.5, 0.3, 0.25, 2.3)] == [10, 20, 25, 3, 3, 23]  # 2.5 -> 3
    assert repeat_count(3, 0.5) == 2 and repeat_count(4, 0.1) == 0 and repeat_count(7, 1 / 3) == 2


def test_plain_data_is_drawn_as_before_and_spans_of_repeat_1_change_nothing():
    """Each sample once per pass, in the order `randperm(n)` seeded by seed + pass gives (what every
    run before weighting drew), with or without a span per entry."""
    kw = dict(micro_batch_size=2, world_size=1, rank=0, total=10, seed=5)
    plain = list(StepBatchSampler(10, **kw))
    expected = [torch.randperm(10, generator=torch.Generator().manual_seed(5 + p)).tolist() for p in (0, 1)]
    assert plain == [order[i:i + 2] for order in expected for i in range(0, 10, 2)]
    assert list(StepBatchSampler(10, **kw, spans=[SourceSpan(0, 0, 6), SourceSpan(1, 6, 10)])) == plain
    assert list(StepBatchSampler(10, **kw, shuffle=False)) == [[i, i + 1] for i in range(0, 10, 2)] * 2


def test_repeat_2_holds_each_sample_twice_per_pass_shuffled_or_not():
    spans = [SourceSpan(0, 0, 6, 2.0), SourceSpan(1, 6, 10)]
    for shuffle in (False, True):
        sampler = StepBatchSampler(10, micro_batch_size=4, world_size=1, rank=0, total=12, seed=3, spans=spans,
                                   shuffle=shuffle)
        batches = list(sampler)  # 16 samples per pass: 4 micro-batches, 3 passes
        for p in range(3):
            counts = collections.Counter(i for batch in batches[4 * p:4 * p + 4] for i in batch)
            assert counts == {**{i: 2 for i in range(6)}, **{i: 1 for i in range(6, 10)}}
        if not shuffle:  # the file's samples twice over, as a file holding them twice is read
            assert [i for batch in batches[:4] for i in batch] == [*range(6), *range(6), *range(6, 10)]
    # group_by_length and two ranks: the same multiset per pass
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 0]
    ranks = [list(StepBatchSampler(10, micro_batch_size=2, world_size=2, rank=r, total=8, seed=1, spans=spans,
                                   lengths=lengths)) for r in (0, 1)]
    counts = collections.Counter(i for batch in ranks[0][:4] + ranks[1][:4] for i in batch)
    assert counts == {**{i: 2 for i in range(6)}, **{i: 1 for i in range(6, 10)}}


def test_a_fractional_repeat_draws_an_exact_count_afresh_each_pass_reproducibly():
    spans = [SourceSpan(0, 0, 10, 2.5), SourceSpan(1, 10, 17, 0.3)]  # 25 + round(2.1) = 2: 27 per pass

    def passes(seed: int, shuffle: bool = True) -> list[collections.Counter]:
        sampler = StepBatchSampler(17, micro_batch_size=27, world_size=1, rank=0, total=4, seed=seed, spans=spans,
                                   shuffle=shuffle)
        return [collections.Counter(batch) for batch in sampler]

    drawn = passes(7)
    for counts in drawn:
        assert sorted(counts[i] for i in range(10)) == [2] * 5 + [3] * 5  # 2.5 x 10: five samples a third time
        assert sum(counts[i] for i in range(10, 17)) == 2 and all(counts[i] <= 1 for i in range(10, 17))
    thirds = [frozenset(i for i in range(10) if counts[i] == 3) for counts in drawn]
    assert len(set(thirds)) > 1  # a fresh draw per pass: over passes every sample gets its share
    assert passes(7) == drawn  # the seed fixes them: a resumed run draws what the uninterrupted one drew
    assert passes(7, shuffle=False) == drawn  # shuffle orders the pass; the draw is the same
    assert passes(8) != drawn
    resumed = StepBatchSampler(17, micro_batch_size=9, world_size=1, rank=0, total=9, seed=7, spans=spans)
    whole = list(resumed)
    resumed.skip(4)  # mid-pass (3 micro-batches per pass)
    assert list(resumed) == whole[4:]


def test_unshuffled_the_micro_batch_remainder_left_out_of_each_epoch_is_the_end_of_the_pass():
    """docs/custom-data.md: up to global_micro - 1 samples of a pass are left out of each epoch; with
    data.shuffle false the end of the pass, the last entry's fractional draw first. 3 + 2 x 1.5 = 6 samples
    a pass in global micro-batches of 4 (2 x 2 ranks): [0, 1, 2, 3] trains, 4 and the draw never do."""
    spans = [SourceSpan(0, 0, 3), SourceSpan(1, 3, 5, 1.5)]
    ranks = [StepBatchSampler(5, micro_batch_size=2, world_size=2, rank=rank, total=3, seed=0, spans=spans,
                              shuffle=False) for rank in (0, 1)]
    assert [list(sampler) for sampler in ranks] == [[[0, 1]] * 3, [[2, 3]] * 3]


@pytest.mark.parametrize(("entry", "message"), [
    ("{path: a.jsonl, repeat: 0}", "data.train[1].repeat must be a number > 0 (2: every sample twice per epoch, "
                                   "0.5: half of them), got 0"),
    ("{path: a.jsonl, repeat: -2}", "data.train[1].repeat must be a number > 0 (2: every sample twice per epoch, "
                                    "0.5: half of them), got -2"),
    ("{path: a.jsonl, repeat: .inf}", "data.train[1].repeat must be a number > 0 (2: every sample twice per "
                                      "epoch, 0.5: half of them), got inf"),
    ("{path: a.jsonl, repeat: twice}", "data.train[1].repeat: expected a number, got 'twice'"),
    ("{path: a.jsonl, repeat: true}", "data.train[1].repeat: expected a number, got True"),
    ("{path: a.jsonl, weight: 2}", "unknown key(s) ['data.train[1].weight'] (known keys of data.train[1]: "
                                   "['path', 'repeat'])"),
    ("{path: a.jsonl, repeat:2}", "unknown key(s) ['data.train[1].repeat:2']; 'data.train[1].repeat:2' is one key: "
                                  "YAML needs a space after the colon (repeat: 2) (known keys of data.train[1]: "
                                  "['path', 'repeat'])"),
    ("{repeat: 2}", "data.train[1].path is required (the file, wildcard or folder to read), got None"),
    ("{path: [a.jsonl], repeat: 2}", "data.train[1].path: expected text, got ['a.jsonl']"),
    ("[a.jsonl, 2]", "data.train[1]: ['a.jsonl', 2] is not str | DataSource"),
    ("{path: a.jsonl, repeat: 1.0e+20}", "data.train[1].repeat must be at most 100_000_000 (an epoch holds at most "
                                         "100_000_000 samples), got 1e+20"),
])
def test_a_bad_entry_is_one_line_naming_its_field(tmp_path, capsys, entry, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"data:\n  train: [b.jsonl, {entry}]\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, needs_data=False)
    assert str(error.value) == f"{path}: {message}"
    assert main(["train", str(path)]) == 2  # the command: that line, no traceback
    assert capsys.readouterr().err == f"modrwkv train: error: {path}: {message}\n"


def test_val_entries_refuse_a_repeat_and_plain_and_weighted_entries_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  init_from: some/folder\ndata:\n  train: [a.jsonl, {path: 'b/*.jsonl', repeat: 2.5}]\n"
                    "  val: [{path: v.jsonl, repeat: 2}]\ntrain:\n  val_every: 10\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: data\.val\[0\]\.repeat: validation is not weighted \(each val "
                                          r"sample counts once\); remove the repeat$"):
        load_config(path, needs_data=False)
    config = load_config(path, ["--data.val", "[{path: v.jsonl}, w.jsonl]"], needs_data=False)
    assert config.data.train == ["a.jsonl", DataSource("b/*.jsonl", 2.5)]
    assert config.data.val == [DataSource("v.jsonl"), "w.jsonl"]


def test_entries_built_in_python_are_entries_and_checked_as_written_ones():
    """A config dict holding `DataSource` objects (a library user's, or `load_config(...).data.train` passed
    on) reads them as the mappings they stand for, where each became the text of its repr, a file
    'DataSource(path=...)' that no reader could open."""
    from modrwkv.training import config_from_dict

    data = {"train": [DataSource("a.jsonl", 2), "b.jsonl", {"path": "c.jsonl"}], "val": [DataSource("v.jsonl")]}
    config = config_from_dict({"data": data, "train": {"val_every": 10}}, needs_model=False)
    assert config.data.train == [DataSource("a.jsonl", 2.0), "b.jsonl", DataSource("c.jsonl")]
    assert config.data.val == [DataSource("v.jsonl")]
    with pytest.raises(ConfigError, match=r"^data\.train\[0\]\.repeat must be a number > 0 .*, got -1$"):
        config_from_dict({"data": {"train": [DataSource("a.jsonl", -1)]}}, needs_model=False)
    with pytest.raises(ConfigError, match=r"^data\.train\[0\]\.repeat: expected a number, got 'twice'$"):
        config_from_dict({"data": {"train": [DataSource("a.jsonl", "twice")]}}, needs_model=False)


# --- reading: every container, the dedupe warning, the summary ---------------------------------------------


def write_tar(path: Path, folder: Path, records: list[dict]) -> None:
    """The records as a WebDataset shard: key.png + key.json (question and answer)."""
    with tarfile.open(path, "w") as archive:
        for i, record in enumerate(records):
            for name, data in ((f"{i:04d}.png", (folder / record["image"]).read_bytes()),
                               (f"{i:04d}.json", json.dumps({k: record[k] for k in ("question", "answer")}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def test_each_container_is_weighted_by_its_entry(tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a, b, c = (qa_records(tmp_path, name, n, seed) for name, n, seed in (("a", 5, 0), ("b", 4, 1), ("c", 6, 2)))
    write_jsonl(tmp_path / "a.jsonl", a)
    (tmp_path / "b.json").write_text(json.dumps(b))
    pq.write_table(pa.Table.from_pylist(c), tmp_path / "c.parquet")
    (tmp_path / "shards").mkdir()
    write_tar(tmp_path / "shards" / "00000.tar", tmp_path, a[:3])
    write_tar(tmp_path / "shards" / "00001.tar", tmp_path, b[:2])
    entries = [DataSource(str(tmp_path / "a.jsonl"), 2), str(tmp_path / "b.json"),
               DataSource(str(tmp_path / "c.parquet"), 0.5), DataSource(str(tmp_path / "shards"), 3)]
    with caplog.at_level(logging.INFO, logger="modrwkv.training.data"):
        samples, spans = read_sources(DataConfig(format="qa", train=entries))
    assert spans == [SourceSpan(0, 0, 5, 2), SourceSpan(1, 5, 9), SourceSpan(2, 9, 15, 0.5), SourceSpan(3, 15, 20, 3)]
    assert [s.messages[1].content for s in samples[9:15]] == [r["answer"] for r in c]
    assert [s.messages[1].content for s in samples[15:]] == [r["answer"] for r in a[:3] + b[:2]]
    assert f"data.train[2]: {tmp_path / 'c.parquet'}: kept 6 of 6 records" in caplog.messages
    assert describe_mixture(spans, entries) == (
        f"data.train[0] {tmp_path / 'a.jsonl'}: 5 samples x repeat 2 = 10 per epoch; "
        f"data.train[1] {tmp_path / 'b.json'}: 4 samples = 4 per epoch; "
        f"data.train[2] {tmp_path / 'c.parquet'}: 6 samples x repeat 0.5 = 3 per epoch; "
        f"data.train[3] {tmp_path / 'shards'}: 5 samples x repeat 3 = 15 per epoch (32 samples per epoch, 20 read)")
    # series files: every window of the file
    rows = [f"{np.sin(i / 3):.4f}\n" for i in range(40)]
    (tmp_path / "s.csv").write_text("y\n" + "".join(rows))
    (tmp_path / "r.csv").write_text("y\n" + "".join(rows[:20]))
    series = DataConfig(format="series", options={"lookback": 8, "horizon": 4},
                        train=[DataSource(str(tmp_path / "s.csv"), 1.5), str(tmp_path / "r.csv")])
    samples, spans = read_sources(series)
    windows = 40 - 12 + 1
    assert spans[0] == SourceSpan(0, 0, windows, 1.5) and spans[0].per_pass == 44 and spans[1].start == windows
    assert spans[1] == SourceSpan(1, windows, windows + 9) and len(samples) == windows + 9


def test_a_file_two_entries_give_is_read_once_with_the_larger_repeat_and_the_warning_says_so(tmp_path, caplog):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.jsonl").write_text("")
    every, a = str(tmp_path / "*.jsonl"), str(tmp_path / "a.jsonl")
    with caplog.at_level(logging.WARNING, logger="modrwkv.data.files"):
        assigned = assign_paths([every, a, str(tmp_path / "b.jsonl")], "data.train", [1, 5, 1])
    names = [(Path(path).name, owner) for path, owner in assigned]
    assert names == [("b.jsonl", 0), ("c.jsonl", 0), ("a.jsonl", 1)]  # a.jsonl under data.train[1], its repeat 5
    assert caplog.messages == [
        f"data.train: {a} is given by data.train[0] ({every!r}) and data.train[1] ({a!r}, repeat 5); it is read "
        f"once, with repeat 5 (the largest). To upsample a file, give it once with a repeat: {{path: {a}, "
        "repeat: 2} reads each of its samples twice per epoch",
        f"data.train: {tmp_path / 'b.jsonl'} is given by data.train[0] ({every!r}) and data.train[2] "
        f"({str(tmp_path / 'b.jsonl')!r}); it is read once. To upsample a file, give it once with a repeat: "
        f"{{path: {tmp_path / 'b.jsonl'}, repeat: 2}} reads each of its samples twice per epoch"]


def test_a_file_listed_twice_warns_to_use_repeat_and_trains_once(tmp_path, caplog):
    """The old trick (listing a file twice to upsample it) reads the file once, and the warning names `repeat`."""
    path = write_jsonl(tmp_path / "twice.jsonl", qa_records(tmp_path, "t", 8, 0))
    with caplog.at_level(logging.WARNING, logger="modrwkv.data.files"):
        samples, spans = read_sources(DataConfig(format="qa", train=[path, path]))
    assert len(samples) == 8 and spans == [SourceSpan(0, 0, 8)]
    assert caplog.messages == [
        f"data.train: {path} is given by data.train[0] ({path!r}) and data.train[1] ({path!r}); it is read once. "
        f"To upsample a file, give it once with a repeat: {{path: {path}, repeat: 2}} reads each of its samples "
        "twice per epoch"]


# --- training ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_repeat_2_trains_as_the_file_holding_its_records_twice(tmp_path, shuffle):
    a, b = qa_records(tmp_path, "a", 6, 0), qa_records(tmp_path, "b", 4, 1)
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", records)
             for name, records in (("a", a), ("b", b), ("aa", a + a))}
    weighted = train(run_config(tmp_path, "weighted", [{"path": files["a"], "repeat": 2}, files["b"]],
                                shuffle=shuffle))
    doubled = train(run_config(tmp_path, "doubled", [files["aa"], files["b"]], shuffle=shuffle))
    assert weighted.metrics["samples"] == doubled.metrics["samples"] == 16
    assert [r["loss"] for r in weighted.history] == [r["loss"] for r in doubled.history]
    expected = final_weights(doubled)
    for key, value in final_weights(weighted).items():
        assert torch.equal(value, expected[key]), key


class _Crash(BaseException):
    """Stands in for a kill: nothing of ours runs after it (tests/test_training.py's)."""


class _CrashAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise _Crash()


def test_a_weighted_run_resumed_mid_epoch_matches_the_uninterrupted_one(tmp_path):
    """Fractional repeats, shuffled, grouped by length, in a data-loader worker: resumed from step 4 of an
    11-sample pass of micro-batches of 2 (5 per pass), it trains what the uninterrupted run trained."""
    files = [write_jsonl(tmp_path / "a.jsonl", qa_records(tmp_path, "a", 6, 0)),
             write_jsonl(tmp_path / "b.jsonl", qa_records(tmp_path, "b", 4, 1))]
    cfg = run_config(tmp_path, "full", [{"path": files[0], "repeat": 1.5}, {"path": files[1], "repeat": 0.5}],
                     group_by_length=True, num_workers=1)
    cfg["train"].update(max_steps=12, batch_size=2, micro_batch_size=2)
    full = train(cfg)
    assert full.metrics["samples"] == 11 and full.metrics["epochs"] == pytest.approx(12 / 5)
    cfg = copy.deepcopy(cfg)
    cfg["output"].update(dir=str(tmp_path / "killed"), save_every=4)
    with pytest.raises(_Crash):
        train(cfg, callbacks=[_CrashAt(6)])
    assert latest_checkpoint(cfg["output"]["dir"]).name == "step-00000004"
    resumed = train(cfg, resume=True)
    assert [r["step"] for r in resumed.history] == list(range(5, 13))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history[4:]]
    expected = final_weights(full)
    for key, value in final_weights(resumed).items():
        assert torch.equal(value, expected[key]), key


def test_a_weighted_run_reports_its_mix_and_records_its_entries(tmp_path):
    files = [write_jsonl(tmp_path / "a.jsonl", qa_records(tmp_path, "a", 6, 0)),
             write_jsonl(tmp_path / "b.jsonl", qa_records(tmp_path, "b", 4, 1))]
    cfg = run_config(tmp_path, "run", [{"path": files[0], "repeat": 0.5}, files[1]])
    cfg["train"].update(max_steps=2, batch_size=2, micro_batch_size=2)
    lines: list[str] = []
    result = train(cfg, progress=lines.append)
    assert lines[0] == (f"data.train: data.train[0] {files[0]}: 6 samples x repeat 0.5 = 3 per epoch; "
                        f"data.train[1] {files[1]}: 4 samples = 4 per epoch (7 samples per epoch, 10 read)")
    assert result.metrics["samples"] == 7
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["train"] == [{"path": files[0], "repeat": 0.5}, files[1]]  # plain stays plain
    assert "2 optimizer steps of 2 samples = 0.67 epochs of 7 samples" in (tmp_path / "run" / "config.yaml").read_text()


def test_an_entry_that_gives_no_sample_is_named_in_a_warning(tmp_path, caplog):
    """An entry whose files hold no record (an empty export) trains nothing, whatever its repeat: a warning
    names it, where only the mix line said `0 samples x repeat 2 = 0 per epoch`."""
    a = write_jsonl(tmp_path / "a.jsonl", qa_records(tmp_path, "a", 4, 0))
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    cfg = run_config(tmp_path, "run", [a, {"path": empty, "repeat": 2}])
    cfg["train"].update(max_steps=1)
    with caplog.at_level(logging.WARNING, logger="modrwkv.training.recipe"):
        assert train(cfg).metrics["samples"] == 4
    assert [m for m in caplog.messages if m.startswith("data.train[")] == [
        f"data.train[1] {empty} gives no usable sample: the entry adds nothing to an epoch"]


def test_files_of_another_format_are_named_across_entries(tmp_path):
    """Each entry has its own reader; the check that the files hold one format spans them all."""
    from modrwkv.data.readers import DataError

    good = write_jsonl(tmp_path / "a.jsonl", qa_records(tmp_path, "a", 2, 0))
    other = write_jsonl(tmp_path / "b.jsonl", [{"image": "a-0.png", "conversations": [
        {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "red"}]}])
    with pytest.raises(DataError) as error:
        read_sources(DataConfig(format="qa", train=[good, DataSource(other, 2)]))
    assert error.value.reason == "other_format"
    assert str(error.value) == (f"data.train: {other} holds llava records, but {good} holds qa records: one reader "
                                "reads them all, and it would skip every record of the other format; give files of "
                                "one format (data.format: qa)")


def test_a_val_file_that_data_train_reads_too_is_named_in_a_warning(tmp_path, caplog):
    """data.val naming a file data.train reads (through a wildcard, another spelling of its path, a weighted
    entry): the run validates on it, with a warning that its score is of records it trains on. A series file
    is not named: its val rows are not its training rows."""
    a = write_jsonl(tmp_path / "a.jsonl", qa_records(tmp_path, "a", 4, 0))
    write_jsonl(tmp_path / "b.jsonl", qa_records(tmp_path, "b", 4, 1))
    held_out = write_jsonl(tmp_path / "held-out.json", qa_records(tmp_path, "v", 2, 2))
    again = str(tmp_path / "." / "b.jsonl")
    config = DataConfig(format="qa", train=[a, DataSource(str(tmp_path / "*.jsonl"), 2)], val=[held_out, again])
    assert val_files_trained_on(config) == [again]
    assert val_files_trained_on(DataConfig(format="qa", train=[a], val=[held_out])) == []
    (tmp_path / "s.csv").write_text("y\n" + "".join(f"{i % 5}\n" for i in range(60)))
    series = str(tmp_path / "s.csv")
    assert val_files_trained_on(DataConfig(format="series", train=[series], val=[series])) == []
    cfg = run_config(tmp_path, "run", [a], val=[{"path": a}, held_out])
    cfg["train"].update(max_steps=1, val_every=1)
    with caplog.at_level(logging.WARNING, logger="modrwkv.training.recipe"):
        train(cfg)
    assert (f"data.val: {a} is read by data.train too: a validation on records the model trains on tells how well it "
            "has learnt them, not how it does on new ones (and picks output.final best, and early stopping, by that); "
            "give held-out records") in caplog.messages
    # Samples given in Python replace data.train's files, which are not looked at: no warning, and a pattern that
    # matches nothing (a template's) is no error.
    caplog.clear()
    cfg = run_config(tmp_path, "given", [str(tmp_path / "data" / "*.jsonl")], val=[a])
    cfg["train"].update(max_steps=1, val_every=1)
    with caplog.at_level(logging.WARNING, logger="modrwkv.training.recipe"):
        train(cfg, samples=read_samples(DataConfig(format="qa", train=[a, str(tmp_path / "b.jsonl")])))
    assert not [message for message in caplog.messages if "read by data.train too" in message]


def test_a_missing_file_of_an_entry_is_named_before_the_model_is_built(tmp_path, monkeypatch, capsys):
    """A data.train or data.val entry whose file does not exist is one line naming the entry, before the model
    is built and the training data read (where a data.val file was opened only after both)."""
    import modrwkv.training.recipe as recipe

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(recipe, "setup_model", no_model)
    a = write_jsonl(tmp_path / "a.jsonl", qa_records(tmp_path, "a", 4, 0))
    gone = str(tmp_path / "gone.jsonl")
    cases = {"train": ([a, {"path": gone, "repeat": 2}], [], f"data.train[1]: {gone}: no such file"),
             "val": ([a], [a, gone], f"data.val[1]: {gone}: no such file"),
             "glob": ([a], [str(tmp_path / "v*.jsonl")], f"data.val: no file matches {str(tmp_path / 'v*.jsonl')!r}")}
    for name, (train_files, val, message) in cases.items():
        cfg = run_config(tmp_path, name, train_files, val=val)
        cfg["train"]["val_every"] = 1 if val else 0
        with pytest.raises(FileNotFoundError) as error:
            train(cfg)
        assert str(error.value) == message
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["train", str(path)]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"modrwkv train: error: {message}"


def test_resume_takes_an_entry_written_either_way_and_refuses_a_changed_repeat(tmp_path):
    """`{path: a.jsonl}` and `{path: a.jsonl, repeat: 1}` read what `a.jsonl` reads, and `repeat: 2` is
    `repeat: 2.0`: --resume compares what the entries read, not how they were written."""
    from modrwkv.training.config import check_resume, config_from_dict, dump_config

    def config(train: list) -> object:
        return config_from_dict({"data": {"format": "qa", "train": train}}, needs_data=False, needs_model=False)

    dump_config(config(["a.jsonl", {"path": "b.jsonl", "repeat": 2}]), tmp_path / "config.yaml", header="run")
    for same in (["a.jsonl", {"path": "b.jsonl", "repeat": 2.0}],
                 [{"path": "a.jsonl"}, {"path": "b.jsonl", "repeat": 2}],
                 [{"path": "a.jsonl", "repeat": 1}, {"path": "b.jsonl", "repeat": 2}]):
        check_resume(config(same), tmp_path)
    with pytest.raises(ConfigError, match=r"data\.train: \['a\.jsonl', \{'path': 'b\.jsonl', 'repeat': 2\.0\}\] -> "
                                          r"\['a\.jsonl', \{'path': 'b\.jsonl', 'repeat': 3\.0\}\]"):
        check_resume(config(["a.jsonl", {"path": "b.jsonl", "repeat": 3}]), tmp_path)
    with pytest.raises(ConfigError,
                       match=r"data\.train: \['a\.jsonl', .*\] -> \[\{'path': 'a\.jsonl', 'repeat': 0\.5\}"):
        check_resume(config([{"path": "a.jsonl", "repeat": 0.5}, {"path": "b.jsonl", "repeat": 2}]), tmp_path)


def test_an_epoch_larger_than_a_pass_may_hold_is_one_line_before_training(tmp_path, capsys):
    """Each rank builds a pass in memory (~24 bytes an index): 10 samples at repeat 2e7 (2e8 an epoch) are
    refused with the mix and the bound, before the model trains, where they exhausted memory; 1e7 (the bound,
    10**8) passes the check."""
    from modrwkv.training.data import check_pass_size

    spans = [SourceSpan(0, 0, 3), SourceSpan(1, 3, 13, 2e7)]
    check_pass_size([SourceSpan(0, 0, 10, 1e7)], ["b.jsonl"])
    with pytest.raises(ConfigError) as error:
        check_pass_size(spans, ["a.jsonl", DataSource("b.jsonl", 2e7)])
    assert str(error.value) == (
        "data.train: an epoch of 200_000_003 samples is more than the 100_000_000 a pass over the data may hold "
        "(each rank builds it in memory): data.train[0] a.jsonl: 3 samples = 3 per epoch; data.train[1] b.jsonl: "
        "10 samples x repeat 2e+07 = 200000000 per epoch (200000003 samples per epoch, 13 read); lower the repeats")
    files = [write_jsonl(tmp_path / "a.jsonl", qa_records(tmp_path, "a", 3, 0)),
             write_jsonl(tmp_path / "b.jsonl", qa_records(tmp_path, "b", 10, 1))]
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(run_config(tmp_path, "run", [files[0], {"path": files[1], "repeat": 2e7}])))
    assert main(["train", str(path)]) == 2
    assert capsys.readouterr().err == ("modrwkv train: error: data.train: an epoch of 200_000_003 samples is more than "
                                       "the 100_000_000 a pass over the data may hold (each rank builds it in memory): "
                                       f"data.train[0] {files[0]}: 3 samples = 3 per epoch; data.train[1] {files[1]}: "
                                       "10 samples x repeat 2e+07 = 200000000 per epoch (200000003 samples per epoch, "
                                       "13 read); lower the repeats\n")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_pass_is_one_tensor_of_indices_not_an_object_a_batch():
    """A pass of 200_000 global micro-batches (one sample at repeat 2e5, one a batch) starts without making a
    Python object a batch (~600 bytes each, 18 MB of them traced here; 10**8 ran out of memory): its first batch
    costs well under a megabyte of Python objects, what the indices take being one tensor."""
    import tracemalloc

    sampler = StepBatchSampler(1, micro_batch_size=1, world_size=1, rank=0, total=3, seed=0,
                               spans=[SourceSpan(0, 0, 1, 2e5)])
    tracemalloc.start()
    try:
        assert next(iter(sampler)) == [0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


# --- series: the linear baseline is fitted on the mixture -------------------------------------------------


def wave_files(folder: Path) -> dict[str, Path]:
    """Two noisy trended waves (periods 12 and 7): a.csv, b.csv."""
    rng = np.random.default_rng(0)
    files = {}
    for name, rows, period in (("a", 400, 12), ("b", 300, 7)):
        t = np.arange(rows)
        values = np.sin(2 * np.pi * t / period) + 0.01 * t + 0.3 * rng.standard_normal(rows)
        files[name] = folder / f"{name}.csv"
        files[name].write_text("value\n" + "".join(f"{v:.5f}\n" for v in values))
    return files


SERIES_OPTIONS = {"lookback": 32, "horizon": 8, "split": "train", "standardize": True, "season": 12, "drift": True}


def test_a_series_entrys_repeat_weighs_its_windows_in_the_linear_baseline_fit(tmp_path):
    """The ridge a series encoder's `linear_baseline` adds back is fitted on the mixture the model trains on:
    each window weighs as its entry's share of an epoch, in proportion only (scaled to a mean of 1 over the
    windows read): `{a.csv: 2, b.csv: 1}` is scikit-learn's Ridge with those sample weights, its alpha the
    one whose held-out MSE (computed here from the documented split) is lowest; `{a: 4, b: 2}` is the same
    fit, bit for bit, and so is a fractional repeat's count divided out; every entry alike (repeat 1, or 3
    everywhere) is the unweighted fit, bit for bit."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    from modrwkv.data.linear_baseline import LINEAR_BASELINE_ALPHAS, fit_linear_baseline, training_windows
    from modrwkv.data.readers.series import TimeSeriesReader
    from modrwkv.training.data import fit_training_windows

    files = {name: str(path) for name, path in wave_files(tmp_path).items()}

    def fit(*train):
        return fit_training_windows(DataConfig(format="series", options=SERIES_OPTIONS, train=list(train)), 12, True)

    weighted, doubled = fit(DataSource(files["a"], 2), files["b"]), fit(DataSource(files["a"], 4), DataSource(files["b"], 2))
    plain, tripled = fit(files["a"], files["b"]), fit(DataSource(files["a"], 3), DataSource(files["b"], 3))
    assert doubled.alpha == weighted.alpha and doubled.held_out_mse == weighted.held_out_mse
    assert np.array_equal(doubled.baseline.weight, weighted.baseline.weight)
    assert np.array_equal(doubled.baseline.bias, weighted.baseline.bias)
    reference = fit_linear_baseline(list(TimeSeriesReader([files["a"], files["b"]], **SERIES_OPTIONS)), 12, True)
    for same in (plain, tripled):  # every entry alike: the windows one reader cuts from both files, unweighted
        assert np.array_equal(same.baseline.weight, reference.baseline.weight)
        assert np.array_equal(same.baseline.bias, reference.baseline.bias) and same.explain() == reference.explain()
    assert np.abs(weighted.baseline.weight - plain.baseline.weight).max() > 0.01  # the repeat matters
    windows = {"a": 400 * 7 // 10 - 40 + 1, "b": 300 * 7 // 10 - 40 + 1}  # 70 % train rows, lookback + horizon 40
    assert (weighted.windows, weighted.weight) == (windows["a"] + windows["b"], 2 * windows["a"] + windows["b"])
    assert weighted.explain().startswith(f"ridge regression on {windows['a'] + windows['b']} training windows weighted "
                                         f"as an epoch holds them ({2 * windows['a'] + windows['b']} in all), alpha")

    # An independent fit: sklearn's Ridge with the weights in proportion 2 : 1, the alpha chosen on each file's
    # last fifth of windows (rounded) after fitting on those whose 8-step future ends before that fifth's first.
    samples = list(TimeSeriesReader([files["a"], files["b"]], **SERIES_OPTIONS))
    found = training_windows(samples, 12, True)
    z, y, scales = found.past, found.target, found.scales
    w = np.r_[np.full(windows["a"], 2.0), np.ones(windows["b"])]
    w /= w.mean()
    fit_rows, held_rows, offset = [], [], 0
    for n in windows.values():
        held = round(n * 0.2)
        fit_rows += range(offset, offset + n - held - 7)
        held_rows += range(offset + n - held, offset + n)
        offset += n
    held_mse = {}
    for alpha in LINEAR_BASELINE_ALPHAS:
        ridge = sklearn.Ridge(alpha=alpha).fit(z[fit_rows], y[fit_rows], sample_weight=w[fit_rows])
        error = ((ridge.predict(z[held_rows]) - y[held_rows]) * scales[held_rows, None]) ** 2
        held_mse[alpha] = float(np.sum(error.mean(axis=1) * w[held_rows]) / w[held_rows].sum())
    assert weighted.held_out_mse == pytest.approx(held_mse, rel=1e-6)
    assert weighted.alpha == min(held_mse, key=held_mse.__getitem__)
    expected = sklearn.Ridge(alpha=weighted.alpha).fit(z, y, sample_weight=w)
    np.testing.assert_allclose(weighted.baseline.weight, expected.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(weighted.baseline.bias, expected.intercept_, rtol=1e-6, atol=1e-9)

    # repeat 0.5 of a's 241 windows puts 121 in an epoch: each weighs 121/241 of b's
    half = fit(DataSource(files["a"], 0.5), files["b"])
    w = np.r_[np.full(windows["a"], 121 / windows["a"]), np.ones(windows["b"])]
    expected = sklearn.Ridge(alpha=half.alpha).fit(z, y, sample_weight=w / w.mean())
    np.testing.assert_allclose(half.baseline.weight, expected.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(half.baseline.bias, expected.intercept_, rtol=1e-6, atol=1e-9)
    assert half.weight == pytest.approx(121 + windows["b"])


def test_the_linear_baseline_is_fitted_on_every_training_window_whatever_the_training_stride(tmp_path):
    """Training may cut its windows one horizon apart (`stride: 8`), but the ridge is fitted on every
    training window (stride 1): the same fit, bit for bit, as the reader at stride 1 gives to
    `fit_linear_baseline`, the repeats still weighing each entry's windows; and `linear_baseline: auto`
    decides on those windows: 280 training rows are 161 windows of 96 + 24 (a fit), where one window
    every 24 rows would be 7 (too few, so auto would train without the ridge)."""
    from modrwkv.data.linear_baseline import fit_linear_baseline
    from modrwkv.data.readers.series import TimeSeriesReader
    from modrwkv.training.data import fit_training_windows, size_linear_baseline

    files = {name: str(path) for name, path in wave_files(tmp_path).items()}

    def fit(stride, *train):
        options = {**SERIES_OPTIONS, "stride": stride}
        return fit_training_windows(DataConfig(format="series", options=options, train=list(train)), 12, True)

    reference = fit_linear_baseline(list(TimeSeriesReader(files["a"], **SERIES_OPTIONS, stride=1)), 12, True)
    strided = fit(8, files["a"])
    assert strided.windows == 400 * 7 // 10 - 40 + 1 == reference.windows
    assert np.array_equal(strided.baseline.weight, reference.baseline.weight)
    assert np.array_equal(strided.baseline.bias, reference.baseline.bias) and strided.explain() == reference.explain()
    weighted, every = fit(8, DataSource(files["a"], 2), files["b"]), fit(1, DataSource(files["a"], 2), files["b"])
    assert np.array_equal(weighted.baseline.weight, every.baseline.weight) and weighted.weight == every.weight
    assert np.abs(weighted.baseline.weight - strided.baseline.weight).max() > 0.01  # b's windows and a's repeat count

    config = load_config("configs/series-cpu.yaml", ["--data.train", f"[{files['a']}]", "--data.options.stride", "24",
                                                     "--model.encoders.series.options.season", "12"])
    sized, note = size_linear_baseline(config)
    assert sized.model.encoders["series"].options["linear_baseline"] is True
    assert note == f"linear_baseline auto ({files['a']}): a linear baseline is fitted (the training windows allow it)"


def test_a_weighted_series_run_trains_on_the_mixtures_baseline_and_resumes_with_the_checkpoints(tmp_path):
    """`modrwkv train` fits the linear baseline on the weighted windows (the test above checks that fit against
    scikit-learn's) and saves it; --resume takes the checkpoint's baseline as it is, fitting nothing again."""
    from modrwkv.multimodal import ModRWKV
    from modrwkv.training.data import fit_training_windows

    files = {name: str(path) for name, path in wave_files(tmp_path).items()}
    cfg = yaml.safe_load((REPO / "configs" / "series-cpu.yaml").read_text())
    cfg["model"]["lm"]["config"] = {"n_layer": 1, "n_embd": 64}
    cfg["model"]["encoders"]["series"]["options"].update(season=12, drift=True, linear_baseline=True)
    options = {key: value for key, value in SERIES_OPTIONS.items() if key not in ("season", "drift")}
    cfg["data"] = {"format": "series", "train": [{"path": files["a"], "repeat": 2}, files["b"]], "options": options}
    cfg["train"].update(max_steps=3, batch_size=4, micro_batch_size=4, warmup_steps=1, val_every=0,
                        val_at_start=False, early_stopping_patience=0, val_metric="loss")
    cfg["output"].update(dir=str(tmp_path / "run"), save_every=1, final="last")
    lines: list[str] = []
    with pytest.raises(_Crash):
        train(cfg, callbacks=[_CrashAt(2)], progress=lines.append)
    weighted = fit_training_windows(DataConfig(format="series", options=SERIES_OPTIONS,
                                               train=[DataSource(files["a"], 2), files["b"]]), 12, True)
    assert any(line.startswith("linear baseline (") and "weighted as an epoch holds them" in line for line in lines)
    saved = ModRWKV.from_pretrained(latest_checkpoint(tmp_path / "run")).encoders["series"].linear()
    np.testing.assert_allclose(saved.weight, weighted.baseline.weight, rtol=1e-9, atol=1e-12)
    lines.clear()
    resumed = train(cfg, resume=True, progress=lines.append)
    assert not any(line.startswith("linear baseline (") for line in lines)  # nothing fitted again
    final = ModRWKV.from_pretrained(resumed.final_dir).encoders["series"].linear()
    assert np.array_equal(final.weight, saved.weight) and np.array_equal(final.bias, saved.bias)


def test_a_sampler_given_a_pass_larger_than_the_bound_refuses_it_before_building_anything():
    """`StepBatchSampler` used directly checks its spans as training's setup does (`check_pass_size`): 10
    samples at repeat 2e7 (2e8 a pass, ~4.8 GB to build when iterated) are refused at construction, at once,
    with the mix and the bound; a repeat whose count is no finite number is a ValueError naming it (was an
    OverflowError); 1e7, the bound itself, constructs as before."""
    import time

    kw = dict(micro_batch_size=2, world_size=1, rank=0, total=5, seed=0)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        StepBatchSampler(13, **kw, spans=[SourceSpan(0, 0, 3), SourceSpan(1, 3, 13, 2e7)], lengths=range(13))
    assert time.perf_counter() - started < 0.5
    assert str(error.value) == (
        "data.train: an epoch of 200_000_003 samples is more than the 100_000_000 a pass over the data may hold "
        "(each rank builds it in memory): data.train[0]: 3 samples = 3 per epoch; data.train[1]: 10 samples x repeat "
        "2e+07 = 200000000 per epoch (200000003 samples per epoch, 13 read); lower the repeats")
    for repeat in (float("inf"), float("nan"), 1e308, -1.0):
        with pytest.raises(ValueError, match=r"^data\.train\[1\]: repeat must be a number from 0 to 100_000_000, got "):
            StepBatchSampler(13, **kw, spans=[SourceSpan(0, 0, 3), SourceSpan(1, 3, 13, repeat)])
    with pytest.raises(ValueError, match=r"^data\.train\[0\]: a span's start 4 and stop 3 must satisfy"):
        SourceSpan(0, 4, 3)
    at_bound = StepBatchSampler(10, **kw, spans=[SourceSpan(0, 0, 10, 1e7)])
    assert (at_bound.num_samples, at_bound.per_pass, len(at_bound)) == (10**8, 10**8 // 2, 5)
    small = StepBatchSampler(10, **kw, shuffle=False, spans=[SourceSpan(0, 0, 6, 2.0), SourceSpan(1, 6, 10)])
    assert list(small) == [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3]]  # 0-5 twice, then 6-9: 8 batches a pass

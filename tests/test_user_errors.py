"""What a user sees after the usual mistakes: one line on stderr naming the file (and line, key or
limit), exit status 2, no traceback, and nothing lost (a chat survives its bad turns; outputs are
checked before the work whose result they would hold). Everything runs in-process on tiny files."""

import io
import json
import re
import socket
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_model
from PIL import Image

from modrwkv.cli import main
from modrwkv.data.readers import DataError, LlavaReader, QAReader, TimeSeriesReader
from modrwkv.data.sample import Message, Sample
from modrwkv.lm import RWKV7Config, RWKV7State

REPO = Path(__file__).resolve().parents[1]
LM = RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, head_size=64, dim_w=32, dim_a=32, dim_v=32, dim_g=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fails(capsys, args: list[str]) -> str:
    """Runs the CLI, which must fail as a user error; returns its one-line message."""
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse's own usage errors
        code = exit_info.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err and captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.startswith("modrwkv")]
    assert len(lines) == 1, captured.err
    return lines[0]


# --- checkpoint files -------------------------------------------------------------------------


def test_files_that_are_not_checkpoints_are_named_with_the_reason(tmp_path, capsys):
    (tmp_path / "junk.pth").write_text("garbage\n")
    torch.save({"emb.weight": torch.zeros(2, 2)}, tmp_path / "whole.pth")
    whole = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])  # a download cut short

    class Code:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"emb.weight": Code()}, tmp_path / "code.pth")
    (tmp_path / "model.gguf").write_text("not gguf")
    cases = {
        "junk.pth": "junk.pth: cannot read as a PyTorch checkpoint: neither a zip archive nor a pickle "
                    "(it starts with b'garbage\\n')",
        "cut.pth": f"cut.pth: cannot read as a PyTorch checkpoint: a damaged or truncated zip archive (no table of "
                   f"contents; {len(whole) // 2} bytes). Was the download or copy cut short?",
        "code.pth": "code.pth: cannot read as a PyTorch checkpoint (it holds Python objects besides tensors "
                    "(Unsupported global: GLOBAL print was not an allowed global by default), which are not loaded "
                    "because unpickling them can run code; save a plain dict of tensors instead)",
        "model.gguf": "model.gguf: not a GGUF file (it does not start with the GGUF magic bytes)",
    }
    from modrwkv.lm.gguf_format import save_gguf

    save_gguf(make_model(LM, seed=1).state_dict(), tmp_path / "whole.gguf")
    (tmp_path / "cut.gguf").write_bytes((tmp_path / "whole.gguf").read_bytes()[:3_000_000])
    line = fails(capsys, ["generate", "--model", str(tmp_path / "cut.gguf"), "--prompt", "hi"])
    assert line.startswith(f"modrwkv generate: error: {tmp_path}/cut.gguf: cannot read as GGUF (")
    assert line.endswith("; damaged or truncated? (3000000 bytes))")
    for name, message in cases.items():
        line = fails(capsys, ["generate", "--model", str(tmp_path / name), "--prompt", "hi"])
        assert line == f"modrwkv generate: error: {tmp_path}/{message}"
    assert not zipfile.is_zipfile(tmp_path / "cut.pth")


# --- outputs: checked before the work, named, no temporary files left -----------------------------


def test_outputs_are_checked_before_loading_or_generating(tmp_path, capsys):
    """The model does not even exist: each error is about the output, so it came first."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.gguf").write_text("old")
    absent = str(tmp_path / "absent.pth")
    cases = [
        (["generate", "--model", absent, "--prompt", "hi", "--save-state", f"{tmp_path}/no/s.state"],
         f"cannot write {tmp_path}/no/s.state: no folder {tmp_path}/no"),
        (["generate", "--model", absent, "--prompt", "hi", "--save-state", f"{tmp_path}/folder"],
         f"{tmp_path}/folder is a folder; give a file name (e.g. {tmp_path}/folder/out)"),
        (["export", "--model", absent, "--format", "gguf", "--output", f"{tmp_path}/file.gguf"],
         f"{tmp_path}/file.gguf already exists; pass overwrite=True (modrwkv export --overwrite) to replace it"),
        (["export", "--model", absent, "--format", "gguf", "--output", f"{tmp_path}/no/x.gguf"],
         f"cannot write {tmp_path}/no/x.gguf: no folder {tmp_path}/no"),
        (["export", "--model", absent, "--format", "fla", "--output", f"{tmp_path}/file.gguf"],
         f"cannot write the folder {tmp_path}/file.gguf: it is a file"),
        (["export", "--model", absent, "--format", "fla", "--output", f"{tmp_path}/file.gguf/sub"],
         f"cannot write the folder {tmp_path}/file.gguf/sub: it is inside {tmp_path}/file.gguf, which is a file"),
        (["quickstart", "--output", f"{tmp_path}/file.gguf"], f"cannot write the folder {tmp_path}/file.gguf: it is a file"),
    ]
    for args, message in cases:
        assert fails(capsys, args) == f"modrwkv {args[0]}: error: {message}"
    assert (tmp_path / "file.gguf").read_text() == "old"


def test_a_failed_state_save_names_the_path_and_leaves_no_temporary_file(tmp_path):
    state = RWKV7State.zeros(LM, 1)
    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError, match="taken is a folder; give a file name"):
        state.save(tmp_path / "taken")
    (tmp_path / "taken" / "x.state.tmp").mkdir()  # the writer's temporary name is blocked: the write fails
    with pytest.raises(OSError, match=f"cannot write the state to {tmp_path}/taken/x.state: "):
        state.save(tmp_path / "taken" / "x.state")
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["x.state.tmp"]
    state.save(tmp_path / "ok.state")
    assert RWKV7State.load(tmp_path / "ok.state", LM).batch_size == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.state", "taken"]


def test_operating_system_errors_read_as_path_and_problem(tmp_path, capsys):
    assert fails(capsys, ["train", str(tmp_path / "none.yaml")]) == \
        f"modrwkv train: error: {tmp_path}/none.yaml: no such file or directory"
    assert fails(capsys, ["train", str(tmp_path)]) == f"modrwkv train: error: {tmp_path}: is a directory"


def test_serve_checks_the_port_before_loading_the_model(tmp_path, capsys):
    assert "argument --port: invalid port 70000: expected a number from 0 to 65535" in \
        fails(capsys, ["serve", "--model", "x", "--port", "70000"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = fails(capsys, ["serve", "--model", str(tmp_path / "absent.pth"), "--port", str(port)])
    assert line == f"modrwkv serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_sampling_values_are_checked_before_the_model_loads(tmp_path, capsys):
    absent = str(tmp_path / "absent")
    assert fails(capsys, ["chat", "--model", absent, "--top-p", "1.5"]) == \
        "modrwkv chat: error: top_p must lie in (0, 1], got 1.5"
    (tmp_path / "qa.jsonl").write_text(json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    for value in ("0", "-3"):
        assert fails(capsys, ["eval", "--model", absent, "--task", "custom", "--data", str(tmp_path / "qa.jsonl"),
                              "--max-new-tokens", value, "--output", str(tmp_path / "out")]) == \
            f"modrwkv eval: error: max_new_tokens must be at least 1, got {value}"
    (tmp_path / "taken").write_text("")
    assert fails(capsys, ["eval", "--model", absent, "--task", "custom", "--data", str(tmp_path / "qa.jsonl"),
                          "--output", str(tmp_path / "taken")]) == \
        f"modrwkv eval: error: cannot write the folder {tmp_path}/taken: it is a file"


# --- training configs ---------------------------------------------------------------------------


def tiny_config(tmp_path: Path) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["output"]["dir"] = str(tmp_path / "run")
    cfg["data"]["train"] = [str(tmp_path / "train.json")]
    return cfg


def test_yaml_mistakes_are_named_by_line_and_column(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  lm:\n    config: {n_layer: 1, n_embd: 64\n  ctx_len: 64\n")
    assert fails(capsys, ["train", str(path)]) == (
        f"modrwkv train: error: {path}:4:10: invalid YAML: expected ',' or '}}', but got ':' "
        "(while parsing a flow mapping at line 3, column 13)")
    path.write_text("model:\n\tctx_len: 64\n")
    assert fails(capsys, ["train", str(path)]).endswith(
        f"{path}:2:1: invalid YAML: found character '\\t' that cannot start any token (while scanning for the next "
        "token); YAML indents with spaces, not tabs")
    path.write_text("train:\n  max_stpes: 10\n")
    assert "unknown key(s) ['train.max_stpes']; did you mean 'train.max_steps' for 'train.max_stpes'?" in \
        fails(capsys, ["train", str(path)])
    path.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    assert fails(capsys, ["train", str(path), "--train.lr", "[1,"]) == (
        f"modrwkv train: error: {path}: override --train.lr '[1,': not a YAML value (expected the node content, "
        "but found '<stream end>'); quote text, write lists as '[a, b]'")
    assert "syntax.yaml:2:1: invalid YAML: expected the node content, but found '<stream end>'" in \
        fails(capsys, ["push-to-hub", "--model", str(tmp_path), "--repo", "a/b", "--training-config",
                       str(_write(tmp_path / "syntax.yaml", "a: [\n"))])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_configs_in_utf16_with_bom_or_crlf_read_as_utf8(tmp_path):
    from modrwkv.training import load_config

    text = yaml.safe_dump(tiny_config(tmp_path))
    expected = load_config(_write(tmp_path / "plain.yaml", text)).to_dict()
    for name, data in {"utf16.yaml": text.encode("utf-16"), "bom.yaml": b"\xef\xbb\xbf" + text.encode(),
                       "crlf.yaml": text.replace("\n", "\r\n").encode()}.items():
        (tmp_path / name).write_bytes(data)
        assert load_config(tmp_path / name).to_dict() == expected, name


def test_resume_with_a_different_config_names_each_changed_key(tmp_path, capsys):
    from modrwkv.training.config import check_resume, config_from_dict, dump_config

    cfg = tiny_config(tmp_path)
    path = _write(tmp_path / "c.yaml", yaml.safe_dump(cfg))
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000010").mkdir(parents=True)  # a complete checkpoint, as far as resume looks
    (run / "checkpoints" / "step-00000010" / "training_state.ckpt").write_bytes(b"")
    (run / "checkpoints" / "latest").write_text("step-00000010")
    dump_config(config_from_dict(cfg), run / "config.yaml", header="this run: ...")
    line = fails(capsys, ["train", str(path), "--resume", "--model.lm.config.n_embd", "128", "--train.stage", "lora"])
    assert line == (
        f"modrwkv train: error: --resume: the run in {run} was started with a different config ({run}/config.yaml): "
        f"model.lm.config.n_embd: 64 -> 128; train.stage: '2' -> 'lora'. Resume with the run's own config (modrwkv "
        f"train {run}/config.yaml --resume), or start a new run in another output.dir")
    # Where and how the run goes on may change; the saved config is not overwritten by a refused resume.
    changed = {**cfg, "runtime": {**cfg["runtime"], "precision": "bf16-mixed"},
               "output": {**cfg["output"], "log_every": 7}, "data": {**cfg["data"], "num_workers": 2}}
    check_resume(config_from_dict(changed), run)
    assert (run / "config.yaml").read_text().startswith("# this run: ...")
    # A config.yaml from a version without some setting: the setting has its default value.
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["train"]["seed"], saved["data"]["options"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    check_resume(config_from_dict(cfg), run)
    with pytest.raises(ValueError, match=r"data\.options\.lookback: None -> 8; train\.seed: 42 -> 7\. "):
        check_resume(config_from_dict({**cfg, "train": {**cfg["train"], "seed": 7},
                                       "data": {**cfg["data"], "options": {"lookback": 8}}}), run)


def test_a_run_with_nothing_to_learn_stops_at_its_first_step(tmp_path):
    """Images that do not decode are dropped one by one; when the whole first step is dropped, the
    run stops with the reasons, before any checkpoint of an untrained model is written."""
    from modrwkv.training import train

    samples = [Sample([Message("user", "<image>\nWhat colour?"), Message("assistant", "red")],
                      images=[b"not an image"], source=f"bad[{i}]") for i in range(8)]
    cfg = tiny_config(tmp_path)
    cfg["train"]["max_steps"] = 3
    with pytest.raises(ValueError, match=r"^step 1 of training had no token to learn from: its samples were dropped "
                                         r"\(bad_media: 8; the reasons are logged above\)"):
        train(cfg, samples=samples)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "final").exists()


# --- data files ---------------------------------------------------------------------------------


def test_utf16_data_files_read_as_their_utf8_twins(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    record = {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nNaïve café?"},
                                                  {"from": "gpt", "value": "日本語"}]}
    text = "\n".join(json.dumps(record, ensure_ascii=False) for _ in range(3)) + "\n"
    (tmp_path / "utf8.jsonl").write_text(text, encoding="utf-8")
    (tmp_path / "utf16.jsonl").write_bytes(text.encode("utf-16"))  # with a BOM, as Windows tools write it
    (tmp_path / "utf16be.jsonl").write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    expected = [s.messages for s in LlavaReader(tmp_path / "utf8.jsonl", on_error="raise")]
    for name in ("utf16.jsonl", "utf16be.jsonl"):
        assert [s.messages for s in LlavaReader(tmp_path / name, on_error="raise")] == expected
    (tmp_path / "broken16.jsonl").write_bytes(b"\xff\xfe" + "{}\n".encode("utf-16-le") + b"\x00")
    with pytest.raises(DataError, match="broken16.jsonl: starts with a UTF-16 byte-order mark but is not UTF-16"):
        list(LlavaReader(tmp_path / "broken16.jsonl", on_error="skip"))

    csv = "date,a\n" + "".join(f"d{i},{np.sin(i):.4f}\n" for i in range(40))
    (tmp_path / "s8.csv").write_text(csv)
    (tmp_path / "s16.csv").write_bytes(csv.replace("\n", "\r\n").encode("utf-16"))
    windows = [s.series[0] for s in TimeSeriesReader(tmp_path / "s8.csv", lookback=8, horizon=4)]
    got = [s.series[0] for s in TimeSeriesReader(tmp_path / "s16.csv", lookback=8, horizon=4)]
    assert len(windows) == 29 and all(np.array_equal(a, b) for a, b in zip(windows, got, strict=True))


def test_a_series_column_with_a_stray_word_is_named_not_dropped(tmp_path):
    rows = [f"{i},{i * 0.5}" for i in range(30)]
    rows[11] = "11,n/a"
    (tmp_path / "s.csv").write_text("t,load\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"s\.csv:13: column 'load': 'n/a' is not a number, though most of the "
                                        r"column's cells are \(1 of 30 are not\)"):
        list(TimeSeriesReader(tmp_path / "s.csv", lookback=8, horizon=4, on_error="skip"))
    (tmp_path / "pipes.csv").write_text("t,load\n" + "\n".join(f"{i}|{i}" for i in range(30)) + "\n")
    with pytest.raises(DataError, match=r"pipes\.csv:2: 1 fields, header has 2"):
        list(TimeSeriesReader(tmp_path / "pipes.csv", lookback=8, horizon=4))
    (tmp_path / "labels.csv").write_text("t,load,label\n" + "".join(f"{i},{i},x{i % 3}\n" for i in range(30)))
    samples = list(TimeSeriesReader(tmp_path / "labels.csv", lookback=8, horizon=4))  # a text column is left out
    assert {s.meta["columns"][0] for s in samples} == {"t", "load"}


def test_series_csv_as_spreadsheets_and_pandas_write_it(tmp_path):
    """Files written by real tools: Excel in a ';' locale, pandas' `to_csv` with its index, cells
    formatted with thousands separators or %, a file without a header row."""
    load = [100 + 10 * np.sin(i / 3) for i in range(30)]

    def read(name: str, text: str) -> dict[str, np.ndarray]:
        (tmp_path / name).write_text(text)
        samples = list(TimeSeriesReader(tmp_path / name, lookback=26, horizon=4, on_error="raise"))
        return {s.meta["columns"][0]: np.concatenate([s.series[0], s.meta["target"]]) for s in samples}

    semicolons = read("excel.csv", "date;load\n" + "".join(f"2024-01-{i + 1:02d};{v:.4f}\n" for i, v in enumerate(load)))
    np.testing.assert_allclose(semicolons["load"], load, atol=1e-4)
    indexed = read("pandas.csv", ",load\n" + "".join(f"{i},{v:.4f}\n" for i, v in enumerate(load)))
    assert list(indexed) == ["load"]  # the row index is not a series to forecast
    np.testing.assert_allclose(indexed["load"], load, atol=1e-4)
    assert list(read("ids.csv", "id,load\n" + "".join(f"{i},{v:.4f}\n" for i, v in enumerate(load)))) == ["id", "load"]

    formatted = {"thousands.csv": ("date,load\n", '"{:,.1f}"', 1000), "percent.csv": ("date,load\n", "{:.1f}%", 1),
                 "decimal-comma.csv": ("date;load\n", "{:.1f}", 1)}
    for name, (header, cell, scale) in formatted.items():
        cells = [cell.format(v * scale) for v in load]
        cells = [c.replace(".", ",") for c in cells] if name == "decimal-comma.csv" else cells
        with pytest.raises(DataError, match=f"{name}:2: column 'load': {cells[0].strip(chr(34))!r} is not a plain number"):
            read(name, header + "".join(f"d{i}{header[4]}{c}\n" for i, c in enumerate(cells)))
    with pytest.raises(DataError, match=r"headless.csv:1: the first row \['100.0', '3.5'\] holds numbers"):
        read("headless.csv", "100.0,3.5\n" + "".join(f"{v:.4f},1.0\n" for v in load))
    # the same with each row's timestamp first, as a logger or `to_csv(header=False)` writes it: the first
    # row was read as the names of two columns '100.0' and '3.5', and its values lost
    for stamp in ("2024-01-01 00:00", "2024-01-01T00:00:00Z", "01/31/2024", "31.01.2024 00:00"):
        with pytest.raises(DataError, match=rf"dated.csv:1: the first row \[{stamp!r}, '100.0', '3.5'\] holds a date "
                                            r"and numbers, not column names: the file needs a header row"):
            read("dated.csv", f"{stamp},100.0,3.5\n" + "".join(f"{stamp},{v:.4f},1.0\n" for v in load))
    # names that are numbers beside a date column's name stay names (years, as a wide table names them)
    assert list(read("years.csv", "date,2023,2024\n" + "".join(f"d{i},{v:.4f},1.0\n" for i, v in enumerate(load)))) \
        == ["2023", "2024"]
    # A wide table's columns named by dates, hours or integers, as pandas' to_csv writes it (its index's empty name
    # first), or with a trailing delimiter: names, not a data row (the empty names counted as numbers refused them).
    for header, names in ((",2024-01-01,2024-01-02", ["2024-01-01", "2024-01-02"]), (",12:00,13:00", ["12:00", "13:00"]),
                          (",0,1", ["0", "1"]), ("2024-01-01,2024-01-02,", ["2024-01-01", "2024-01-02"])):
        index = header.startswith(",")
        rows = "".join(f"{f'{i},' if index else ''}{v:.4f},1.0{'' if index else ','}\n" for i, v in enumerate(load))
        assert list(read("wide.csv", header + "\n" + rows)) == names, header
    with pytest.raises(DataError, match=r"gap.csv:1: the first row \['2024-01-01', '', '3.5'\] holds a date and numbers"):
        read("gap.csv", "2024-01-01,,3.5\n" + "".join(f"2024-01-01,{v:.4f},1.0\n" for v in load))


def test_init_names_a_broken_first_record_and_skips_it_like_any_other(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    good = json.dumps({"image": "a.png", "question": "q", "answer": "a"})
    (tmp_path / "one.jsonl").write_text('\n{"image": "a.png", "question": "q", "answer": "a",}\n')  # a trailing comma
    assert fails(capsys, ["init", "--data", str(tmp_path / "one.jsonl"), "--yes"]) == (
        f"modrwkv init: error: {tmp_path}/one.jsonl:2: invalid JSON: Expecting property name enclosed in double "
        "quotes (column 51)")
    (tmp_path / "some.jsonl").write_text(good[:-1] + ",}\n" + f"{good}\n" * 3)
    assert main(["init", "--data", str(tmp_path / "some.jsonl"), "--yes", "--output", str(tmp_path / "c.yaml")]) == 0
    assert "kept 3 of 4 records; skipped 1 (bad_json: 1)" in capsys.readouterr().out


def test_init_lists_the_skipped_records_one_per_line_when_none_is_usable(tmp_path, capsys):
    """Turns keyed 'speaker' / 'text' (not from / value): every record is skipped; the error line
    names the first, and the others are listed one per line above it (they were run together onto it)."""
    turns = [{"speaker": "human", "text": "Colour?"}, {"speaker": "gpt", "text": "red"}]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"conversations": turns}) + "\n" for _ in range(22)))
    assert main(["init", "--data", str(tmp_path / "chat.jsonl"), "--yes"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    skipped = [f"  skipped {tmp_path}/chat.jsonl:{n}: conversations[0] needs 'from' and 'value' (keys: ['speaker', "
               "'text'])" for n in range(1, 21)]
    assert captured.err.splitlines() == [*skipped, "  ... and 2 more skipped records", (
        f"modrwkv init: error: {tmp_path}/chat.jsonl: no usable sample ({tmp_path}/chat.jsonl: kept 0 of 22 records; "
        f"skipped 22 (missing_field: 22); the first: {skipped[0].removeprefix('  skipped ')})")]
    # media not found: the error says where they are looked for
    (tmp_path / "qa.jsonl").write_text(json.dumps({"image": "gone.png", "question": "Colour?", "answer": "red"}) + "\n")
    assert main(["init", "--data", str(tmp_path / "qa.jsonl"), "--yes"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "; if media files were not found, give the folder they are relative to (--media-folder)")


def test_init_names_llama_factorys_alpaca_format_and_the_conversation_to_write(tmp_path, capsys):
    record = {"instruction": "What colour is the circle?", "input": "", "output": "red", "images": ["a.png"]}
    (tmp_path / "alpaca.json").write_text(json.dumps([record], indent=2))
    assert fails(capsys, ["init", "--data", str(tmp_path / "alpaca.json"), "--yes"]) == (
        f"modrwkv init: error: {tmp_path}/alpaca.json: the first record's fields ['images', 'input', 'instruction', "
        "'output'] are LLaMA-Factory's alpaca format, which is not read; write each record as a sharegpt "
        'conversation: {"conversations": [{"from": "human", "value": instruction + input}, {"from": "gpt", "value": '
        'output}], "images": [...]} (docs/custom-data.md)')


def test_init_reads_a_pretty_printed_record_and_names_what_it_found_otherwise(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    record = {"image": "a.png", "question": "What is it?", "answer": "a square"}
    (tmp_path / "pretty.json").write_text(json.dumps(record, indent=4))
    assert main(["init", "--data", str(tmp_path / "pretty.json"), "--yes", "--output", str(tmp_path / "c.yaml")]) == 0
    assert "pretty.json: qa format, 1 usable samples, inputs: image" in capsys.readouterr().out
    (tmp_path / "broken.json").write_text(json.dumps(record, indent=4)[:-2])
    assert fails(capsys, ["init", "--data", str(tmp_path / "broken.json"), "--yes"]) == (
        f"modrwkv init: error: {tmp_path}/broken.json: one JSON object over several lines (not JSONL, one record per "
        "line), and it does not parse: Expecting ',' delimiter: line 4 column 25 (char 79)")
    (tmp_path / "strings.json").write_text('["a.png", "b.png"]')
    assert fails(capsys, ["init", "--data", str(tmp_path / "strings.json"), "--yes"]) == (
        f"modrwkv init: error: {tmp_path}/strings.json: a str where a record should be; expected JSON records "
        "(objects with fields): an array of them, one per line (JSONL), or one object (a record, records keyed by "
        "id, or a pandas to_json() table), or a series file (.csv/.tsv/.npz, .tsf, a "
        ".parquet/.arrow/.json/.jsonl/.xlsx table of series columns, or .parquet/.arrow/.jsonl of one series per row); "
        "see docs/custom-data.md")


def test_init_names_a_folder_and_a_binary_file(tmp_path, capsys):
    assert fails(capsys, ["init", "--data", str(tmp_path), "--yes"]) == \
        f"modrwkv init: error: --data: {tmp_path} is a folder with no .parquet or .tar file, " \
        "no data set saved by datasets' save_to_disk (state.json and .arrow files) or cached by load_dataset " \
        "(dataset_info.json and <name>-<split>.arrow files), no GluonTS data.json(.gz), no class folder, no " \
        "metadata file and no media file with its caption or transcript beside it; give the data files (a wildcard " \
        "such as data/train-*.parquet), a folder of class folders (train/cat/0001.jpg), a folder with a " \
        "metadata.jsonl naming its media files (Hugging Face's imagefolder), or one of media files each with its " \
        ".txt (0001.jpg and 0001.txt)"
    Image.new("RGB", (4, 4)).save(tmp_path / "a.json", format="PNG")
    assert fails(capsys, ["init", "--data", str(tmp_path / "a.json"), "--yes"]) == \
        f"modrwkv init: error: {tmp_path}/a.json:1: not UTF-8 text: byte 0x89 (save the file as UTF-8)"


# --- chat ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    from modrwkv.encoders import build_encoder
    from modrwkv.multimodal import ModRWKV

    folder = tmp_path_factory.mktemp("chat") / "model"
    torch.manual_seed(0)
    ModRWKV.build(make_model(LM, seed=1), {"image": build_encoder("tiny", width=32)}).eval().save_pretrained(folder)
    return folder


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_chat_survives_bad_turns_and_answers_as_if_they_never_happened(image_model, tmp_path, monkeypatch, capsys):
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.inference.session import ChatSession

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "cat.png")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    stream = ChatSession.stream

    def failing_stream(self, text, **kwargs):  # a turn failing in an unforeseen way
        if text == "boom":
            raise RuntimeError("out of memory")
        return stream(self, text, **kwargs)

    monkeypatch.setattr(ChatSession, "stream", failing_stream)
    script = [
        "Hello!",
        f"/image {tmp_path / 'text.png'}", "What is this?",
        f"/image {tmp_path / 'empty.png'}", "And this?",
        f"/image {tmp_path / 'folder'}",
        "/image https://example.com/cat.png",
        f"/audio {tmp_path / 'cat.png'}",
        "boom",
        f"/image {tmp_path / 'cat.png'}", f"/image {tmp_path / 'cat.png'}", "Two of them?",
        f"/save-state {tmp_path / 'no' / 'chat.state'}",
        f"/save-state {tmp_path / 'folder'}",
        "Tell me more.",
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(script) + "\n"))
    assert main(["chat", "--model", str(image_model), "--temperature", "0", "--max-new-tokens", "5"]) == 0
    out, err = capsys.readouterr()

    session = ModRWKVPipeline.from_pretrained(image_model).session(
        temperature=0, max_new_tokens=5, top_p=0.3, presence_penalty=0.5, frequency_penalty=0.5)
    expected = [session.send("Hello!"), session.send("Two of them?", images=[str(tmp_path / "cat.png")] * 2),
                session.send("Tell me more.")]
    assert out == "".join(f"Assistant: {reply}\n" for reply in expected)
    discarded = "; this turn is discarded, the conversation is unchanged"
    assert f"error: cannot decode image '{tmp_path / 'text.png'}': not a recognised image format" in err
    assert err.count(discarded) == 2
    assert f"error: {tmp_path / 'folder'} is a folder, not a file" in err
    assert ("error: https://example.com/cat.png is a web address, and chat reads local files (nothing is downloaded): "
            "download it and give its path") in err  # was "no such file: https://example.com/cat.png"
    assert "error: this model has no audio encoder (it accepts ['image'])" in err
    assert ("error: this turn failed (RuntimeError: out of memory); it is discarded, the conversation is "
            "unchanged") in err
    assert f"error: cannot write {tmp_path / 'no' / 'chat.state'}: no folder {tmp_path / 'no'}" in err
    assert f"error: {tmp_path / 'folder'} is a folder; give a file name" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("flag, value, message", [
    ("--max-batch-size", "0", "argument --max-batch-size: must be at least 1, got 0"),
    ("--max-queue", "-1", "argument --max-queue: must be at least 0, got -1"),
    ("--prefix-cache-mb", "nan", "argument --prefix-cache-mb: must be at least 0, got nan"),
    ("--max-batch-size", "many", "argument --max-batch-size: expected an integer, got 'many'"),
    ("--max-image-pixels", "0", "argument --max-image-pixels: must be at least 1, got 0"),  # as chat's option says
    ("--max-prompt-tokens", "-5", "argument --max-prompt-tokens: must be at least 1, got -5"),
])
def test_serve_sizes_are_checked_as_flags(capsys, flag, value, message):
    assert f"modrwkv serve: error: {message} (see modrwkv serve --help)" == \
        fails(capsys, ["serve", "--model", "absent", flag, value])


def test_a_lone_surrogate_escape_is_named(capsys):
    assert fails(capsys, ["generate", "--model", "absent", "--prompt", "\\ud83d"]) == (
        "modrwkv generate: error: bad backslash escape in '\\\\ud83d': a lone surrogate is not a character (write "
        "\\U0001F600, eight digits, for a character beyond \\uFFFF)")


def test_a_stop_token_outside_the_vocabulary_is_refused(tmp_path, capsys):
    torch.save(make_model(LM, seed=1).state_dict(), tmp_path / "lm.pth")
    line = fails(capsys, ["generate", "--model", str(tmp_path / "lm.pth"), "--prompt", "hi", "--stop-token", "70000"])
    assert line == ("modrwkv generate: error: token id(s) [70000] lie outside the vocabulary (ids 0 to 65535): they "
                    "could never stop or be sampled")


def test_data_settings_are_named_in_config_terms(tmp_path, capsys):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    record = {"image": "gone.png", "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                                      {"from": "gpt", "value": "red"}]}
    (tmp_path / "train.json").write_text(json.dumps([record] * 8))
    (tmp_path / "s.csv").write_text("t,x\n" + "".join(f"{i},{i}\n" for i in range(40)))
    path = _write(tmp_path / "c.yaml", yaml.safe_dump(tiny_config(tmp_path)))
    cases = [
        ([], f"{tmp_path}/train.json: no usable sample ({tmp_path}/train.json: kept 0 of 8 records; skipped 8 "
             f"(missing_media: 8); the first: {tmp_path}/train.json:[0]: media file not found: {tmp_path}/gone.png)"),
        (["--data.media_folder", str(tmp_path / "none")], f"data.media_folder {tmp_path}/none: no such folder"),
        (["--output.dir", str(path)], f"cannot write the folder {path}: it is a file"),
        (["--data.train", f"[{tmp_path}/s.csv]"], f"data.format is llava, but {tmp_path}/s.csv is a time-series file; "
                                                   "set data.format: series (with data.options lookback and horizon)"),
        (["--data.train", f"[{tmp_path}/s.csv]", "--data.format", "series", "--data.options", "{lookback: 8, horizn: 4}"],
         "data.options: unknown option 'horizn' (did you mean 'horizon'?); the series format needs horizon (options "
         "of the series format: ['columns', 'decimals', 'delimiter', 'drift', 'holdout', 'horizon', 'id_columns', 'log_limit', "
         "'lookback', 'max_examples', 'multivariate', 'prompt', 'season', 'split', 'standardize', 'stride'])"),
    ]
    for overrides, message in cases:
        assert fails(capsys, ["train", str(path), *overrides]) == f"modrwkv train: error: {message}"
    assert not (tmp_path / "run").exists()


def test_commands_that_write_a_model_folder_never_write_over_one(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.safetensors").write_text("my trained model")
    absent = str(tmp_path / "absent")  # checked before the source is read
    for args in (["merge-lora", absent, str(tmp_path / "mine")],
                 ["import-released", absent, str(tmp_path / "mine"), "--encoder", "siglip2", "--encoder-source", absent],
                 ["quickstart", "--output", str(tmp_path / "mine")]):
        assert fails(capsys, args) == (f"modrwkv {args[0]}: error: {tmp_path}/mine already exists and is not empty; "
                                       f"choose another {'--output' if args[0] == 'quickstart' else 'output folder'} "
                                       "or remove it")
    assert (tmp_path / "mine" / "model.safetensors").read_text() == "my trained model"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_run_on_a_machine_without_one_is_a_config_error(tmp_path, capsys):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    record = {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                                   {"from": "gpt", "value": "black"}]}
    (tmp_path / "train.json").write_text(json.dumps([record] * 8))
    path = _write(tmp_path / "c.yaml", yaml.safe_dump(tiny_config(tmp_path)))
    assert fails(capsys, ["train", str(path), "--runtime.accelerator", "gpu"]) == \
        "modrwkv train: error: runtime (accelerator: gpu, devices: 1): No supported gpu backend found!"


def test_serve_names_a_local_media_file_given_as_its_folder(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"")
    assert fails(capsys, ["serve", "--model", "absent", "--allow-local-media", str(tmp_path / "a.png")]) == \
        f"modrwkv serve: error: local media folder {tmp_path}/a.png is a file, not a folder"


def test_serve_refuses_private_media_hosts_without_remote_media(capsys):
    assert fails(capsys, ["serve", "--model", "absent", "--allow-private-media-hosts"]) == \
        "modrwkv serve: error: --allow-private-media-hosts only applies with --allow-remote-media: add that too, or drop it"


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_merge_lora_names_a_damaged_lora_file(image_model, tmp_path, capsys):
    import shutil

    from modrwkv.training.config import LoRAConfig
    from modrwkv.training.lora import apply_lora, save_lora

    def lora_folder(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(image_model, folder)
        lm = make_model(LM, seed=1)
        config = LoRAConfig(rank=4)
        apply_lora(lm, config)
        save_lora(lm, config, folder)
        return folder

    syntax = lora_folder("syntax")
    (syntax / "lora.json").write_text('{"rank": 4,')
    assert "syntax/lora.json" in fails(capsys, ["merge-lora", str(syntax), str(tmp_path / "out1")])
    unknown = lora_folder("unknown")
    (unknown / "lora.json").write_text('{"rank": 4, "rnak": 8}')
    message = fails(capsys, ["merge-lora", str(unknown), str(tmp_path / "out2")])
    assert "unknown/lora.json" in message and "'rnak'" in message and "did you mean 'rank'" in message
    cut = lora_folder("cut")
    weights = (cut / "lora.safetensors").read_bytes()
    (cut / "lora.safetensors").write_bytes(weights[: len(weights) // 2])  # a copy cut short
    assert "cut/lora.safetensors" in fails(capsys, ["merge-lora", str(cut), str(tmp_path / "out3")])
    assert not any((tmp_path / name).exists() for name in ("out1", "out2", "out3"))


class Terminal:
    """`modrwkv chat` in a pseudo-terminal: Ctrl-C typed there is a real SIGINT from the terminal."""

    def __init__(self, *args: str) -> None:
        import os
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["OMP_NUM_THREADS"] = "1"
            os.execv(sys.executable, [sys.executable, "-m", "modrwkv.cli", "chat", *args])
        self.seen = ""

    def type(self, keys: str) -> None:
        import os

        os.write(self.fd, keys.encode())

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """What the terminal shows up to and including `text`."""
        import os
        import select
        import time

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"no {text!r} in {self.seen!r}"
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the child is gone
                    raise AssertionError(f"no {text!r} in {self.seen!r}") from None
        shown, self.seen = self.seen.split(text, 1)
        return shown + text

    def status(self, timeout: float = 30) -> int:
        """The exit status, once the program has ended (reading what it still shows meanwhile)."""
        import os
        import time

        deadline = time.monotonic() + timeout
        while (ended := os.waitpid(self.pid, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline, f"still running; it showed {self.seen!r}"
            try:
                self.seen += os.read(self.fd, 4096).decode(errors="replace")
            except OSError:
                time.sleep(0.05)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(ended[1])


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_chat_keeps_the_conversation_through_ctrl_c_a_kill_and_a_restart(image_model, tmp_path):
    import os
    import signal
    import time

    from modrwkv.inference import ModRWKVPipeline

    saved = tmp_path / "chat.session"
    first = Terminal("--model", str(image_model), "--temperature", "0", "--max-new-tokens", "5",
                     "--session", str(saved))
    first.wait_for("You: ")
    first.type("Hello!\n")
    assert first.wait_for("You: ").count("Assistant: ") == 1
    first.type("half a line")
    time.sleep(0.5)  # as a person types: input() is reading (Python sees a signal only between its bytecodes)
    first.type("\x03")  # Ctrl-C at the prompt drops the line, not the conversation
    assert "[Ctrl-C: /exit or Ctrl-D quits; the conversation is kept]" in first.wait_for("You: ")
    os.kill(first.pid, signal.SIGKILL)  # then the machine goes down
    assert first.status() == -signal.SIGKILL

    long = Terminal("--model", str(image_model), "--temperature", "0", "--max-new-tokens", "100000",
                    "--session", str(saved))
    assert "[continuing the conversation in " + str(saved) + ": 1 turn]" in long.wait_for("You: ")
    long.type("Go on.\n")
    long.wait_for("Assistant: ")
    long.type("\x03")  # Ctrl-C in a reply that would run for minutes stops it
    assert "[interrupted: this turn is discarded]" in long.wait_for("You: ", timeout=10)
    long.type("\x04")  # Ctrl-D: a clean exit
    assert long.status() == 0

    session = ModRWKVPipeline.from_pretrained(image_model).session(temperature=0, max_new_tokens=5)
    session.send("Hello!")
    expected, kept = session.state, RWKV7State.load(saved)  # the finished turn, and not the interrupted one
    for name in ("att_shift", "wkv", "ffn_shift"):
        torch.testing.assert_close(getattr(kept, name), getattr(expected, name))


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_chat_takes_paths_as_terminals_paste_them(image_model, tmp_path, monkeypatch, capsys):
    """Drag-and-drop and tab completion write 'my photo.png' or my\\ photo.png; ~ is the home folder."""
    from modrwkv.inference import ModRWKVPipeline

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "my photo.png")
    monkeypatch.setenv("HOME", str(tmp_path))
    escaped = str(tmp_path / "my photo.png").replace(" ", "\\ ")
    script = [f"/image '{tmp_path / 'my photo.png'}'", "One?", f"/image {escaped}", "Two?", "/image ~/my photo.png",
              "Three?", "/save-state ~/chat.state"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(script) + "\n"))
    assert main(["chat", "--model", str(image_model), "--temperature", "0", "--max-new-tokens", "5"]) == 0
    out, err = capsys.readouterr()
    session = ModRWKVPipeline.from_pretrained(image_model).session(
        temperature=0, max_new_tokens=5, top_p=0.3, presence_penalty=0.5, frequency_penalty=0.5)
    image = [str(tmp_path / "my photo.png")]
    expected = [session.send(text, images=image) for text in ("One?", "Two?", "Three?")]
    assert out == "".join(f"Assistant: {reply}\n" for reply in expected) and "error" not in err
    assert (tmp_path / "chat.state").is_file()


# --- images beyond the pixel limit -------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A real 10000 x 9000 scan-sized image (a 1-bit PNG of 11 kB), above Pillow's default limit of
    89,478,485 pixels."""
    path = tmp_path_factory.mktemp("huge") / "scan.png"
    Image.new("1", (10000, 9000)).save(path)
    return path


def too_large(path: Path, how: str) -> str:
    return (f"image '{path}' has 10000x9000 = 90,000,000 pixels, more than the 89,478,485 allowed (a guard against "
            f"decompression bombs: small files that decode to gigabytes); to load it, raise the limit to at least "
            f"90000000 with {how}, or scale the image down")


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_chat_names_its_own_option_for_a_big_image_and_the_option_raises_the_limit(
        image_model, huge_png, monkeypatch, capsys):
    from modrwkv.inference import ModRWKVPipeline

    args = ["chat", "--model", str(image_model), "--temperature", "0", "--max-new-tokens", "4", "--image", str(huge_png)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is it?\n"))
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: {too_large(huge_png, '`modrwkv chat --max-image-pixels 90000000`')}; this turn is "
                   "discarded, the conversation is unchanged\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is it?\n"))
    assert main([*args, "--max-image-pixels", "90000000"]) == 0
    out, err = capsys.readouterr()
    session = ModRWKVPipeline.from_pretrained(image_model).session(
        temperature=0, max_new_tokens=4, top_p=0.3, presence_penalty=0.5, frequency_penalty=0.5)
    expected = session.send("What is it?", images=[str(huge_png)])  # the limit is still raised: the command's own
    cut = session.last_result.finish_reason == "length"  # 4 tokens: the reply may stop at the budget, and says so
    assert out == f"Assistant: {expected}\n" and err == (
        "[the reply stopped at --max-new-tokens 4; run chat with a larger --max-new-tokens for a longer one]\n" if cut else "")
    assert fails(capsys, ["chat", "--model", str(image_model), "--max-image-pixels", "0"]) == (
        "modrwkv chat: error: argument --max-image-pixels: must be at least 1, got 0 (see modrwkv chat --help)")


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_eval_and_init_name_their_own_option_and_training_its_config_key(image_model, huge_png, tmp_path, capsys,
                                                                         caplog):
    from modrwkv.training import train

    records = tmp_path / "test.jsonl"
    records.write_text(json.dumps({"image": str(huge_png), "question": "What is it?", "answer": "white"}) + "\n")
    assert fails(capsys, ["eval", "--model", str(image_model), "--task", "custom", "--data", str(records),
                          "--output", str(tmp_path / "eval")]) == (
        f"modrwkv eval: error: custom sample 1: {too_large(huge_png, '`modrwkv eval --max-image-pixels 90000000`')}")

    line = fails(capsys, ["init", "--data", str(records), "--yes", "--output", str(tmp_path / "c.yaml")])
    assert too_large(huge_png, "`modrwkv init --max-image-pixels 90000000`") in line
    assert main(["init", "--data", str(records), "--yes", "--output", str(tmp_path / "c.yaml"),
                 "--max-image-pixels", "90000000"]) == 0
    capsys.readouterr()
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["data"]["max_image_pixels"] == 90_000_000

    samples = [Sample([Message("user", "<image>\nWhat is it?"), Message("assistant", "white")],
                      images=[str(huge_png)], source=f"scan[{i}]") for i in range(2)]
    cfg = tiny_config(tmp_path)
    cfg["train"].update(max_steps=1, batch_size=2, micro_batch_size=2)
    with pytest.raises(ValueError, match="no token to learn from"):
        train(cfg, samples=samples)
    key = "data.max_image_pixels: 90000000 in the config (or `modrwkv train CONFIG --data.max_image_pixels 90000000`)"
    assert too_large(huge_png, key) in caplog.text
    cfg["data"]["max_image_pixels"] = 90_000_000
    cfg["output"]["dir"] = str(tmp_path / "run2")
    assert train(cfg, samples=samples).metrics["steps"] == 1


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_eval_names_media_the_model_has_no_encoder_for_before_answering(image_model, tmp_path, capsys):
    """Speech records evaluated on an image model: one line naming the modality, the samples and the
    model's encoders, said before the progress bar starts and before anything is written as answered."""
    import soundfile

    soundfile.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    records = tmp_path / "speech.jsonl"
    records.write_text("".join(json.dumps({"audio": "a.wav", "text": "hello"}) + "\n" for _ in range(3)))
    assert main(["eval", "--model", str(image_model), "--task", "custom", "--data", str(records),
                 "--output", str(tmp_path / "eval")]) != 0
    err = capsys.readouterr().err
    assert err == ("modrwkv eval: error: custom: 3 sample(s) have audio input (first: 1), but the model has no audio "
                   "encoder (its encoders: image)\n")
    assert not (tmp_path / "eval" / "predictions.jsonl").exists()


def test_media_cut_short_is_named_by_file_and_line_in_data_by_file_in_chat(tmp_path, monkeypatch, capsys):
    """An Ogg Vorbis cut short (libsndfile alone reads a shorter clip) is one clean error wherever it
    is read: a data reader checking media names the file and line of its record, the processor
    (training's decoding) the record's source, and chat the file, keeping the conversation."""
    import soundfile
    from test_pipeline import tiny_model_dir

    from modrwkv.data.readers import AsrManifestReader, QAReader
    from modrwkv.encoders.media import MediaError
    from modrwkv.inference import ModRWKVPipeline

    buffer = io.BytesIO()
    noise = 0.1 * np.random.default_rng(0).standard_normal(80000).astype(np.float32)
    soundfile.write(buffer, noise, 16000, format="OGG", subtype="VORBIS")
    whole = buffer.getvalue()
    (tmp_path / "whole.ogg").write_bytes(whole)
    (tmp_path / "cut.ogg").write_bytes(whole[: len(whole) // 2])
    assert 0 < len(soundfile.read(tmp_path / "cut.ogg")[0]) < 80000  # libsndfile alone: a shorter clip
    manifest = tmp_path / "speech.jsonl"
    manifest.write_text("".join(json.dumps({"audio": name, "text": "t"}) + "\n" for name in ("whole.ogg", "cut.ogg")))
    reason = f"cannot decode audio '{tmp_path / 'cut.ogg'}': its last Ogg page (at byte "
    with pytest.raises(DataError) as raised:
        list(AsrManifestReader(manifest, verify_media=True, on_error="raise"))
    assert str(raised.value).startswith(f"{manifest}:2: audio does not decode: {reason}")
    assert str(raised.value).endswith("it is cut short")

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"audio": "cut.ogg", "question": "What is it?", "answer": "noise"}) + "\n")
    (sample,) = QAReader(qa)  # without verify_media: found when training decodes it
    with pytest.raises(MediaError, match=rf"^{re.escape(f'{qa}:1: {reason}')}\d+\) holds \d+ of its \d+ bytes: it is "
                       "cut short$"):
        ModRWKVPipeline.from_pretrained(tiny_model_dir()).processor(sample)

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"/audio {tmp_path / 'cut.ogg'}\nWhat is it?\n"))
    assert main(["chat", "--model", str(tiny_model_dir()), "--temperature", "0", "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    assert f"error: {reason}" in err and "; this turn is discarded, the conversation is unchanged" in err
    assert "Traceback" not in err


def test_calendar_columns_of_real_series_files_are_not_series(tmp_path):
    """statsmodels' sunspots and nile CSVs start with a year column (1700.0, 1701.0, ...) and its
    macrodata with year and quarter: they say when a row is, like a date column. They were read as
    series, so a model learnt to forecast a straight line and eval averaged it into the score."""
    import statsmodels.api as sm

    sm.datasets.sunspots.load_pandas().data.to_csv(tmp_path / "sunspots.csv", index=False)
    columns = {s.meta["columns"][0] for s in TimeSeriesReader(tmp_path / "sunspots.csv", lookback=24, horizon=6)}
    assert columns == {"SUNACTIVITY"}
    sm.datasets.macrodata.load_pandas().data[["year", "quarter", "realgdp", "cpi"]].to_csv(tmp_path / "macro.csv")
    columns = {s.meta["columns"][0] for s in TimeSeriesReader(tmp_path / "macro.csv", lookback=24, horizon=6)}
    assert columns == {"realgdp", "cpi"}


def test_a_series_csv_with_a_header_and_no_rows_says_so(tmp_path):
    (tmp_path / "s.csv").write_text("date,load\n\n")
    with pytest.raises(DataError, match=r"s\.csv: no data rows after the header \['date', 'load'\]$"):
        list(TimeSeriesReader(tmp_path / "s.csv", lookback=8, horizon=4))


def test_a_missing_folder_is_named_as_missing(tmp_path, capsys):
    """README's `push-to-hub --model runs/s2/final` and `merge-lora runs/lora ...` before those runs
    exist: the folder is missing, not a folder without config.json / lora.json."""
    missing = tmp_path / "runs" / "s2" / "final"
    for command in (["push-to-hub", "--model", str(missing), "--repo", "acme/my-modrwkv"],
                    ["merge-lora", str(missing), str(tmp_path / "merged")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"error: {missing}: no such folder" in err, err
        assert "Traceback" not in err


def test_evals_missing_data_names_the_folder_on_one_line_and_shows_the_layout_below_it(tmp_path, capsys):
    """`modrwkv eval` on a missing benchmark folder printed the expected layout on the error line, its
    columns run together; the layout now follows that line as the task writes it, indented."""
    from modrwkv.evaluation import get_task

    missing = tmp_path / "textvqa"
    line = fails(capsys, ["eval", "--task", "textvqa", "--data", str(missing), "--model", str(tmp_path / "m")])
    assert line == f"modrwkv eval: error: {missing}: expected a folder with the TextVQA files. Expected layout:"
    main(["eval", "--task", "textvqa", "--data", str(missing), "--model", str(tmp_path / "m")])
    below = capsys.readouterr().err.splitlines()[1:]
    assert below == ["  " + row for row in get_task("textvqa").layout.splitlines()]


@pytest.mark.xdist_group("image_model")  # one xdist worker builds the fixture's model, not both
def test_a_quickstart_folder_stands_for_its_final_model_and_names_its_newest_before_it_has_one(
        image_model, tmp_path, capsys):
    """Every command that loads a model resolves --model in one place (hub.resolve_model_path): a
    quickstart's output folder is its final model once its last stage has written one, and until then an
    error that names the newest model the run saved (the layout of a run stopped in stage 2)."""
    import shutil

    run = tmp_path / "run"
    checkpoint = run / "stage2" / "checkpoints" / "step-00000891"
    checkpoint.mkdir(parents=True)
    (checkpoint / "training_state.ckpt").write_bytes(b"")
    (run / "stage2" / "checkpoints" / "latest").write_text("step-00000891\n")
    shutil.copytree(image_model, run / "stage1" / "final")
    (run / "quickstart.json").write_text(json.dumps({"options": {}, "results": {}}))
    unfinished = (f"{run} is a quickstart's output folder whose run has not finished: its final model {run}/model is "
                  "not there yet; run the quickstart again with the options it was started with to finish it. The "
                  f"newest model it saved is {checkpoint} (a stage's, not the final model).")
    for args in (["generate", "--model", str(run), "--prompt", "hi"], ["chat", "--model", str(run)],
                 ["export", "--model", str(run), "--format", "gguf", "--output", str(tmp_path / "m.gguf")]):
        assert fails(capsys, args) == f"modrwkv {args[0]}: error: {unfinished}"
    shutil.copytree(image_model, run / "model")
    answers = []
    for model in (run, image_model):
        assert main(["generate", "--model", str(model), "--prompt", "The sky is", "--max-new-tokens", "4",
                     "--temperature", "0"]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1]
    from modrwkv.multimodal import ModRWKV

    loaded, saved = ModRWKV.from_pretrained(run).state_dict(), ModRWKV.from_pretrained(image_model).state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    # a training run's output folder (a quickstart's stage folder is one) is its final/, and until then an
    # error naming its newest checkpoint
    stage = run / "stage2"
    assert fails(capsys, ["generate", "--model", str(stage), "--prompt", "hi"]) == (
        f"modrwkv generate: error: {stage} is a training run's output folder whose run has not finished: its model "
        f"{stage}/final is not there yet (`modrwkv train CONFIG --resume` finishes it). Its newest checkpoint is a "
        f"model folder too: --model {checkpoint}")
    loaded = ModRWKV.from_pretrained(run / "stage1").state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)


def test_a_data_file_given_packed_says_to_unpack_it(tmp_path, capsys):
    """A Kaggle download's .zip or a zstd-compressed file (no standard library module reads zstd): the archive or
    compression named from the file's first bytes, with the command that unpacks it, rather than "not UTF-8 text"
    (or, for JSONL, every line a bad record). A gzip or bzip2 file is read decompressed, told by its first bytes even
    under its plain name (tests/test_compressed_files.py); a text file whose first characters spell a magic is
    text."""
    import bz2
    import gzip

    records = json.dumps({"image": "a.png", "question": "What?", "answer": "a"}) + "\n"
    archive = tmp_path / "aptos2019.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("train.jsonl", records)
    (tmp_path / "series.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(16))
    unpack = "not a data file: unpack it ({}) and give the file or folder inside"
    assert fails(capsys, ["init", "--data", str(archive), "--yes"]) == (
        f"modrwkv init: error: {archive}: a ZIP archive, " + unpack.format("unzip"))
    zstd = tmp_path / "series.csv.zst"
    expected = f"{zstd}: zstd-compressed, " + unpack.format("unzstd")
    assert fails(capsys, ["init", "--data", str(zstd), "--yes"]) == f"modrwkv init: error: {expected}"
    assert fails(capsys, ["eval", "--task", "custom-series", "--data", str(zstd), "--model",
                          str(tmp_path / "none")]) == f"modrwkv eval: error: {expected}"
    text_records = json.dumps({"question": "What?", "answer": "a"}) + "\n"
    (tmp_path / "train.jsonl").write_bytes(gzip.compress(text_records.encode()))
    (tmp_path / "records.jsonl").write_bytes(bz2.compress(text_records.encode()))
    for name in ("train.jsonl", "records.jsonl"):
        [sample] = QAReader(tmp_path / name, on_error="raise")
        assert sample.messages[0].content == "What?" and sample.source == f"{tmp_path / name}:1"
    text = tmp_path / "bzh.csv"  # "BZh" is bzip2's magic, but this file is text
    text.write_text("BZh,y\n1,2\n")
    assert "compressed" not in fails(capsys, ["init", "--data", str(text), "--yes"])
    # a JSONL whose first line begins "BZh9" (as a bzip2 file does, before its block's magic) is text: its lines are
    # records, the first a bad one
    lines = tmp_path / "bzh.jsonl"
    lines.write_text("BZh9 is no record\n" + json.dumps({"question": "What?", "answer": "a"}) + "\n")
    reader = QAReader(lines)
    assert len(list(reader)) == 1 and reader.report.skipped == {"bad_json": 1}

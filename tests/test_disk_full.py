"""A write that does not fit: real write failures (the process's file-size limit, RLIMIT_FSIZE, makes
every write past it fail with EFBIG, as a full disk fails with ENOSPC) through the real safetensors,
torch and Lightning writers. The user gets one line naming the file, half-written files are deleted
(they only take space), and a training run says which checkpoint it can still resume from."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from modrwkv.cli import _describe
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.textfiles import write_bytes_atomically, write_text_atomically
from modrwkv.training import latest_checkpoint, train
from modrwkv.weightfiles import save_safetensors, save_torch

resource = pytest.importorskip("resource")  # POSIX
from conftest import make_model  # noqa: E402
from test_training import colour_samples, config  # noqa: E402
import warm_start  # noqa: E402  (tests/)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def limit_file_size(size: int) -> None:
    """No file of this process may grow past `size` bytes: a write past it fails with EFBIG (instead
    of the default SIGXFSZ, which would end the process)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@contextlib.contextmanager
def file_size_limit(size: int | None) -> Iterator[None]:
    """`limit_file_size` for a block of this process, which writes nothing else meanwhile (the limit
    covers pytest's capture files too); None: the block sets it itself (`disk_full_after`)."""
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.getsignal(signal.SIGXFSZ)
    if size is not None:
        limit_file_size(size)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_handler)


@contextlib.contextmanager
def disk_full_after(monkeypatch: pytest.MonkeyPatch, module: object, room: int = 16) -> Iterator[None]:
    """The disk fills up once `module.save_safetensors` has written a model's weights (whose failure is
    named: see above): every later write in the block of more than `room` bytes fails."""
    save = module.save_safetensors

    def save_then_full(*args, **kwargs):
        save(*args, **kwargs)
        limit_file_size(room)

    monkeypatch.setattr(module, "save_safetensors", save_then_full)
    with file_size_limit(None):
        yield


@pytest.mark.parametrize("save", [lambda path: save_safetensors({"w": torch.zeros(1 << 19)}, path),
                                  lambda path: save_torch({"w": torch.zeros(1 << 19)}, path)],
                         ids=["safetensors", "torch"])
def test_a_weights_file_that_does_not_fit_is_an_error_naming_it(tmp_path, save):
    """safetensors says "Error while serializing: I/O error: File too large (os error 27)" and torch.save
    "unexpected pos ...", neither naming the file; both left the partial file behind."""
    path = tmp_path / "weights"
    with file_size_limit(1 << 20), pytest.raises(OSError) as caught:  # 2 MB of zeros into 1 MB
        save(path)
    assert caught.value.errno == errno.EFBIG and _describe(caught.value) == f"{path}: file too large"
    assert list(tmp_path.iterdir()) == []  # neither the file nor a writer's temporary one is left
    save(path)  # room again: the same call writes the file
    assert path.stat().st_size > 1 << 21


def test_a_checkpoint_that_does_not_fit_is_deleted_and_named(tmp_path):
    """The tiny config's weights (34 MB) fit under 40 MB, its optimizer state (67 MB) does not. The run
    used to end with "[Errno 27] File too large", naming nothing, and left the half-written
    checkpoint folder taking the space."""
    cfg = config(tmp_path, "run", max_steps=4)
    cfg["output"]["save_every"] = 2
    with file_size_limit(40 << 20), pytest.raises(OSError) as caught:
        train(cfg, samples=colour_samples(16))
    out = Path(cfg["output"]["dir"])
    assert _describe(caught.value) == (
        f"{out / 'checkpoints' / 'step-00000002'}: file too large; the checkpoint of step 2 was not saved and its "
        "partial files are deleted; no checkpoint of this run was complete yet")
    assert list((out / "checkpoints").iterdir()) == []


def test_a_run_out_of_room_names_the_checkpoint_it_resumes_from(tmp_path, monkeypatch):
    import modrwkv.training.checkpoint as checkpoint

    cfg = config(tmp_path, "run", max_steps=6)
    cfg["output"]["save_every"] = 2
    export, calls = checkpoint.export_model, []

    def disk_full_at_step_4(model, folder, *args):
        calls.append(folder)
        export(model, folder, *args)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")  # as Python's own writes say it

    monkeypatch.setattr(checkpoint, "export_model", disk_full_at_step_4)
    with pytest.raises(OSError) as caught:
        train(cfg, samples=colour_samples(16))
    out = Path(cfg["output"]["dir"])
    step2 = out / "checkpoints" / "step-00000002"
    assert _describe(caught.value) == (
        f"{out / 'checkpoints' / 'step-00000004'}: no space left on device; the checkpoint of step 4 was not saved "
        f"and its partial files are deleted; {step2} is the newest complete checkpoint: make room and continue "
        "with --resume")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000002"]
    monkeypatch.setattr(checkpoint, "export_model", export)
    assert latest_checkpoint(out) == step2
    resumed = train(cfg, samples=colour_samples(16), resume=True)
    assert resumed.metrics["steps"] == 6 and resumed.final_dir == out / "final"


def test_a_latest_pointer_that_does_not_fit_is_named_and_the_complete_checkpoint_kept(tmp_path, monkeypatch):
    """The step's folder is complete once renamed: a `latest` that then cannot be written is named as it is, and
    the folder stays (the message said the checkpoint was not saved and its partial files deleted, while the
    complete folder was on disk); --resume continues from the checkpoint `latest` names."""
    import modrwkv.training.checkpoint as checkpoint

    cfg = config(tmp_path, "run", max_steps=6)
    cfg["output"]["save_every"] = 2
    write = checkpoint.write_text_atomically

    def disk_full_at_step_4(path, text, *args, **kwargs):
        if Path(path).name == "latest" and text == "step-00000004":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, text, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "write_text_atomically", disk_full_at_step_4)
    with pytest.raises(OSError) as caught:
        train(cfg, samples=colour_samples(16))
    root = Path(cfg["output"]["dir"]) / "checkpoints"
    assert _describe(caught.value) == f"{root / 'latest'}: no space left on device"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000002", "step-00000004"]
    assert sorted(p.name for p in (root / "step-00000004").iterdir()) == sorted(
        p.name for p in (root / "step-00000002").iterdir())
    assert latest_checkpoint(root.parent) == root / "step-00000002"


def test_a_text_file_that_does_not_fit_is_named_and_the_old_one_kept(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("the previous summary\n")
    with file_size_limit(1000), pytest.raises(OSError) as caught:
        write_text_atomically(path, "x" * 5000)
    assert _describe(caught.value) == f"{path}: file too large"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"] and path.read_text() == "the previous summary\n"


def test_an_atomic_write_keeps_what_a_plain_write_kept(tmp_path):
    """Writing through a temporary file and a rename used to turn a private 0600 config into a 0644 one,
    replace a symlink by a plain file (leaving its target as it was), and leave its temporary file
    behind, naming only it, when the path was a folder."""
    private = tmp_path / "config.yaml"
    private.write_text("old\n")
    private.chmod(0o600)
    write_text_atomically(private, "new\n")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "new\n"
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "config.json"
    target.write_text("old\n")
    link = tmp_path / "config.json"
    link.symlink_to(target)
    write_text_atomically(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["config.json"]
    umask = os.umask(0o022)
    try:
        new = tmp_path / "new.json"
        write_text_atomically(new, "{}\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644  # as Path.write_text makes it
    folder = tmp_path / "report.json"
    folder.mkdir()
    with pytest.raises(OSError) as caught:
        write_text_atomically(folder, "{}\n")
    assert _describe(caught.value) == f"{folder}: is a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "config.yaml", "new.json", "report.json",
                                                           "shared"]


def test_an_evaluation_out_of_room_names_its_predictions_and_continues_when_run_again(tmp_path):
    """`modrwkv eval` used to end with "error: [Errno 27] File too large" and leave a temporary file."""
    from PIL import Image

    from modrwkv.cli import main
    from test_pipeline import tiny_model_dir

    Image.new("RGB", (16, 16), "red").save(tmp_path / "red.png")
    record = {"image": "red.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour is it?"},
                                                   {"from": "gpt", "value": "red"}]}
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps({**record, "id": str(i)}) + "\n" for i in range(12)))
    args = ["eval", "--task", "custom", "--data", str(data), "--model", str(tiny_model_dir()), "--output",
            str(tmp_path / "out"), "--batch-size", "2", "--max-new-tokens", "2", "--no-progress"]
    # In a process of its own: the limit covers every file the process writes, pytest's capture files too.
    # Started warm (a fork, not ~5 s of imports): the command sets the limit itself, before it runs.
    script = tmp_path / "limited.py"
    script.write_text(f"import runpy, sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                      "from test_disk_full import limit_file_size\n"
                      "limit_file_size(1500)  # a few batches' answers fit, not twelve\n"
                      "runpy.run_module('modrwkv', run_name='__main__', alter_sys=True)\n")
    limited = warm_start.run([str(script), *args], text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             timeout=300)
    assert limited.returncode == 2, limited.stderr[-3000:]
    predictions = tmp_path / "out" / "predictions.jsonl"
    kept = predictions.read_text().splitlines(keepends=True)
    assert 2 <= len(kept) < 12 and len(kept) % 2 == 0 and kept[-1].endswith("\n")  # whole batches, no half line
    assert limited.stderr.strip().splitlines()[-1] == (
        f"modrwkv eval: error: {predictions}: file too large; the answers before this batch are kept there: run the "
        "same command again when there is room, and it continues")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    assert main(args) == 0
    answers = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [a["id"] for a in answers] == [str(i) for i in range(12)]
    assert [json.loads(line) for line in kept] == answers[:len(kept)]


@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links"])
def test_a_final_model_that_does_not_fit_leaves_nothing_and_says_how_to_finish(tmp_path, monkeypatch, links):
    """write_final out of room left its half-written `.final.tmp` and named a file inside it."""
    import modrwkv.training.checkpoint as checkpoint

    step = tmp_path / "checkpoints" / "step-00000002"
    (step / "encoders").mkdir(parents=True)
    big = b"w" * (2 << 20)  # the weights (linked: no room needed) or the encoder (copied) do not fit in 1 MB
    files = {"model.safetensors": big, "encoders/image.bin": b"encoder"} if not links else {
        "model.safetensors": big, "encoders/image.bin": big}
    for name, data in files.items():
        (step / name).write_bytes(data)
    if not links:
        monkeypatch.setattr(checkpoint.os, "link", lambda *paths: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    with file_size_limit(1 << 20), pytest.raises(OSError) as caught:
        checkpoint.write_final(tmp_path, step)
    assert _describe(caught.value) == (
        f"{tmp_path / 'final'}: file too large; the trained model was not written (its partial files are deleted); "
        f"{step} holds it: make room and continue with --resume to write it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]
    assert checkpoint.write_final(tmp_path, step) == tmp_path / "final"  # room again


def _model_folder(folder: Path) -> None:
    from modrwkv.encoders import build_encoder
    from modrwkv.multimodal import ModRWKV
    from test_export import CONFIG

    ModRWKV.build(make_model(CONFIG), {"image": build_encoder("tiny", image_size=16, grid=2, width=32)}
                  ).save_pretrained(folder)


def _fla_export(folder: Path) -> None:
    from modrwkv.lm.export import save_fla_export
    from test_export import CONFIG

    save_fla_export(random_official_state_dict(CONFIG, seed=3), folder)


def _native_encoder(folder: Path) -> None:
    from modrwkv.encoders import build_encoder

    build_encoder("tiny", image_size=16, grid=2, width=32).save_pretrained(folder)


@pytest.mark.parametrize(("save", "writes_weights_with", "named"), [
    (_model_folder, "modrwkv.multimodal.model", "config.json"),
    (_fla_export, "modrwkv.lm.fla_format", "config.json"),
    (_native_encoder, "modrwkv.weightfiles", "encoder.json")], ids=["save_pretrained", "fla export", "encoder"])
def test_a_model_folders_small_file_that_does_not_fit_is_named(tmp_path, monkeypatch, save, writes_weights_with,
                                                               named):
    """The weights fit, then the disk is full: config.json and the other small files were written with
    Path.write_text, whose error named nothing ("[Errno 27] File too large")."""
    import importlib

    folder = tmp_path / "model"
    folder.mkdir()
    with disk_full_after(monkeypatch, importlib.import_module(writes_weights_with)), \
            pytest.raises(OSError) as caught:
        save(folder)
    assert caught.value.errno == errno.EFBIG and _describe(caught.value) == f"{folder / named}: file too large"
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]  # no half-written file left
    monkeypatch.undo()
    save(tmp_path / "again")  # room again
    assert json.loads((tmp_path / "again" / named).read_text())


def test_a_hugging_face_encoder_that_does_not_fit_names_its_folder(tmp_path):
    """transformers' save_pretrained writes config.json with open().write, whose error names nothing."""
    from modrwkv.encoders import build_encoder
    from test_pipeline import WHISPER

    encoder = build_encoder("whisper", config=WHISPER)
    with file_size_limit(16), pytest.raises(OSError) as caught:
        encoder.save_pretrained(tmp_path / "whisper")
    assert _describe(caught.value) == f"{tmp_path / 'whisper'}: file too large"


def test_a_gguf_export_that_does_not_fit_is_named_and_deleted(tmp_path):
    """The gguf package's writer said "[Errno 27] File too large" and left the partial file."""
    from modrwkv.lm.gguf_format import save_gguf
    from test_export import CONFIG

    path = tmp_path / "model.gguf"
    state_dict = random_official_state_dict(CONFIG, seed=3)
    with file_size_limit(1 << 20), pytest.raises(OSError) as caught:  # its 17 MB do not fit in 1 MB
        save_gguf(state_dict, path, dtype="f32")
    assert _describe(caught.value) == f"{path}: file too large"
    assert list(tmp_path.iterdir()) == []


def test_a_quickstart_ended_by_a_full_disk_reports_what_did_not_fit_not_its_record(tmp_path, caplog):
    """The quickstart writes its record (its time) as its process ends; on a full disk that write fails
    too, and its error used to replace the one that ended the run ("quickstart.json: file too large"
    instead of the checkpoint that did not fit and how to continue)."""
    from modrwkv.quickstart.stages import RECORD, RunRecord

    record = RunRecord.open(tmp_path / "qs", {"seed": 0, "steps": list(range(100))})
    saved = (tmp_path / "qs" / RECORD).read_text()
    checkpoint = tmp_path / "qs" / "step-00000004.ckpt"
    with file_size_limit(100), pytest.raises(OSError) as caught, record.counting_this_process():
        write_bytes_atomically(checkpoint, bytes(1000))  # the record, longer than 100 bytes, cannot be written either
    assert caught.value.filename == str(checkpoint) and caught.value.errno == errno.EFBIG
    assert "the time this run took was not recorded" in caplog.text and f"{RECORD}" in caplog.text
    assert (tmp_path / "qs" / RECORD).read_text() == saved
    with record.counting_this_process():  # room again: the record holds this process's time
        pass
    assert json.loads((tmp_path / "qs" / RECORD).read_text())["seconds"] > json.loads(saved)["seconds"]


@pytest.mark.parametrize(("failing", "message"), [
    ("0:2:model", "{step2}: no space left on device; the checkpoint of step 2 was not saved and its partial files "
                  "are deleted; {step1} is the newest complete checkpoint: make room and continue with --resume"),
    ("1:2:state", "{step2}: no space left on device; the checkpoint of step 2 was not saved and its partial files "
                  "are deleted; {step1} is the newest complete checkpoint: make room and continue with --resume"),
    ("0:3:final", "{final}: no space left on device; the trained model was not written (its partial files are "
                  "deleted); {step3} holds it: make room and continue with --resume to write it"),
], ids=["rank 0 checkpoint weights", "rank 1 training state", "rank 0 final model"])
def test_a_write_failing_on_one_rank_ends_every_rank_with_its_error(tmp_path, failing, message):
    """A write that fails on one rank of a multi-process run (rank 0's export, one rank's part of the training
    state, rank 0's final/) used to end that rank only: the others waited at the next barrier, for ever while its
    process lived on (a job burning its GPU hours until its wall time). Every rank now stops with the same error,
    and the run resumes from the checkpoint it names (resumed in one case: the other two write it the same way).
    Step 2's checkpoints are saved mid-run, step 3's at the end."""
    from test_training import outputs_when_one_fails, start_ranks

    from modrwkv.training import load_config

    failed, _, write = failing.split(":")
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    expected = "modrwkv train: error: " + message.format(final=out / "final", **{
        f"step{step}": checkpoints / f"step-{step:08d}" for step in (1, 2, 3)})
    newest = checkpoints / ("step-00000003" if write == "final" else "step-00000001")
    # The final model's case again, resumed at its last step, where Lightning trains nothing and the run writes
    # final/ itself: rank 0 alone, whose failure ended rank 0 only (rank 1 finished with status 0).
    for args in ([], ["--resume"]) if write == "final" else ([],):
        ranks = start_ranks(tmp_path, max_steps=3, output={"save_every": 1}, env={"MODRWKV_TEST_FULL_DISK": failing},
                            args=args)
        outputs = outputs_when_one_fails(ranks, failed=int(failed), timeout=120)
        for rank, (_, stderr) in enumerate(outputs):
            assert ranks[rank].returncode == 2 and stderr.strip().splitlines()[-1] == expected, (args, stderr[-3000:])
        assert latest_checkpoint(out) == newest
        assert not (out / "final").exists() and not list(checkpoints.glob(".*"))  # no partial files are left
    if write == "state":
        resumed = train(load_config(tmp_path / "run.yaml", ["--runtime.devices", "1", "--runtime.strategy", "auto"]),
                        resume=True)
        assert resumed.final_dir == out / "final" and [row["step"] for row in resumed.history] == [2, 3]


def test_a_config_yaml_that_rank_0_cannot_write_ends_every_rank_with_its_error(tmp_path):
    """Rank 0 writes the run's config.yaml before the first step. It used to write it before the ranks
    connected: when that failed (a full disk), rank 0 ended and the other ranks waited at the rendezvous
    for it until the process group's timeout, 30 minutes. It is now written once they are connected, and
    every rank stops with the same one-line error at once."""
    from test_training import outputs_when_one_fails, start_ranks

    ranks = start_ranks(tmp_path, max_steps=3, output={}, env={"MODRWKV_TEST_FULL_DISK": "0:0:config"})
    outputs = outputs_when_one_fails(ranks, failed=0, timeout=60)
    expected = f"modrwkv train: error: {tmp_path / 'run' / 'config.yaml'}: no space left on device"
    for rank, (_, stderr) in enumerate(outputs):
        assert ranks[rank].returncode == 2 and stderr.strip().splitlines()[-1] == expected, stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints").exists()  # no step was trained


class _Unpicklable(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lock = __import__("threading").Lock()  # what a library's exception may hold: it does not pickle


@pytest.mark.parametrize(("error", "copy"), [
    (OSError(errno.ENOSPC, "No space left on device", "/run/checkpoints/.step-00000002.tmp/model.safetensors"),
     OSError(errno.ENOSPC, "No space left on device", "/run/checkpoints/.step-00000002.tmp/model.safetensors")),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "a", None, "b"),
     FileNotFoundError(errno.ENOENT, "No such file or directory", "a", None, "b")),
    (OSError("Disk quota exceeded"), OSError("Disk quota exceeded")),
    (_Unpicklable("a lock"), RuntimeError("_Unpicklable on rank 1: a lock")),
], ids=["full disk", "two file names", "no errno", "unpicklable"])
def test_the_ranks_whose_write_succeeded_raise_a_copy_of_the_failed_ones(monkeypatch, error, copy):
    """Two ranks, the outcomes gathered as torch.distributed does (pickled): rank 1's write fails, rank 0's does
    not, and rank 0 raises what rank 1 raised, an OSError as one (which `save` names the checkpoint in). An
    OSError without an errno used to be copied as a RuntimeError, which ended rank 0 with a traceback while
    rank 1 named the checkpoint."""
    import pickle
    from types import SimpleNamespace

    from modrwkv.training.checkpoint import failing_together

    gathered: dict[int, object] = {}

    def all_gather_object(outcomes: list, mine: object) -> None:
        gathered[rank] = pickle.loads(pickle.dumps(mine))
        outcomes[:] = [gathered.get(other) for other in range(2)]

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    rank = 1
    with pytest.raises(type(error)) as raised, failing_together(SimpleNamespace(world_size=2, global_rank=1)):
        raise error
    assert raised.value is error  # the rank that failed raises its own error
    rank = 0
    with pytest.raises(Exception) as raised, failing_together(SimpleNamespace(world_size=2, global_rank=0)):
        pass
    assert (type(raised.value), raised.value.args, str(raised.value)) == (type(copy), copy.args, str(copy))
    if isinstance(copy, OSError):
        assert (raised.value.errno, raised.value.filename, raised.value.filename2) == (
            copy.errno, copy.filename, copy.filename2)

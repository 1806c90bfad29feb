"""An error that ends training (not a signal) leaves a checkpoint of the last completed optimizer step,
from which --resume continues exactly (progress.SaveOnError): in a step's forward/backward, also between
accumulated micro-batches; in a validation; never inside the optimizer's update; and the CLI says it in
one line. Tiny models of test_training."""

import json
import subprocess
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from safetensors.torch import load_file

from modrwkv.cli import main
from modrwkv.training import latest_checkpoint, train
from modrwkv.training.validation import Validation

from test_training import colour_samples, config, start_ranks, write_llava
from test_validation import val_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

def accumulating_config(tmp_path: Path, name: str) -> dict:
    """8 steps of 8 samples in 2 accumulated micro-batches of 4."""
    return config(tmp_path, name, max_steps=8, micro_batch_size=4)


def final_weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.final_dir / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert [key for key in a if not torch.equal(a[key], b[key])] == []


class Draws(pl.Callback):
    """A random number drawn as each micro-batch starts (as a data augmentation or a dropout would), by step and
    micro-batch: a resumed run draws those of an uninterrupted one."""

    def __init__(self) -> None:
        self.drawn: dict[tuple[int, int], float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.drawn[trainer.global_step, batch_idx % 2] = torch.rand(()).item()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("full")
    draws = Draws()
    return train(accumulating_config(tmp_path, "full"), samples=colour_samples(32), callbacks=[draws]), draws.drawn


class OutOfMemoryAt(pl.Callback):
    """Out of memory in the backward pass of micro-batch `micro` (0 or 1) of step `step + 1`: the first
    micro-batch's is between the accumulated micro-batches, the second's inside the optimizer's closure
    (Lightning runs the stepping micro-batch's forward and backward from optimizer.step)."""

    def __init__(self, step: int, micro: int) -> None:
        self.step, self.micro = step, micro

    def on_before_backward(self, trainer, pl_module, loss):
        if trainer.global_step == self.step and trainer.fit_loop.epoch_loop.batch_idx % 2 == self.micro:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")


@pytest.mark.xdist_group("uninterrupted_accumulating_run")  # one xdist worker trains the fixture's run, not both
@pytest.mark.parametrize("micro", [0, 1])
def test_an_error_in_a_step_saves_the_last_completed_step_and_resume_matches(uninterrupted, tmp_path, micro):
    uninterrupted, drawn = uninterrupted
    cfg = accumulating_config(tmp_path, "failed")
    with pytest.raises(torch.OutOfMemoryError, match="injected") as info:
        train(cfg, samples=colour_samples(32), callbacks=[Draws(), OutOfMemoryAt(5, micro)])
    checkpoint = Path(cfg["output"]["dir"]) / "checkpoints" / "step-00000005"
    assert info.value.__notes__ == [f"training stopped at this error in step 6 of 8; the checkpoint of step 5, the "
                                    f"last completed, is saved to {checkpoint}: --resume continues from it"]
    assert latest_checkpoint(cfg["output"]["dir"]) == checkpoint
    # The run's totals travel in it as a signal's checkpoint has them: step 5's, not the failed step's part.
    saved = torch.load(checkpoint / "training_state.ckpt", weights_only=True)
    assert saved["global_step"] == 5
    totals = saved["callbacks"]["RunTotals"]
    assert totals["recorded_steps"] == 5
    assert totals["tokens"] == sum(row["tokens"] for row in uninterrupted.history[:5])
    draws = Draws()
    resumed = train(cfg, samples=colour_samples(32), resume=True, callbacks=[draws])
    assert draws.drawn == {key: value for key, value in drawn.items() if key[0] >= 5}
    assert [row["step"] for row in resumed.history] == [6, 7, 8]
    assert [row["loss"] for row in resumed.history] == [row["loss"] for row in uninterrupted.history[5:]]
    assert_same_weights(final_weights(resumed), final_weights(uninterrupted))
    for key in ("first_loss", "final_loss", "tokens", "dropped"):
        assert resumed.metrics[key] == uninterrupted.metrics[key], key


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # the test's own wrapper
def test_an_error_inside_the_optimizers_update_saves_nothing_and_says_why(tmp_path):
    class FailingUpdate(pl.Callback):
        """The update of step 4 writes the weights, then fails before it completes."""

        def on_train_start(self, trainer, pl_module):
            optimizer = trainer.optimizers[0]
            step = optimizer.step

            def failing(*args, **kwargs):
                result = step(*args, **kwargs)
                if trainer.global_step == 3:
                    raise RuntimeError("illegal memory access (injected)")
                return result

            optimizer.step = failing

    cfg = config(tmp_path, "update", max_steps=6)
    cfg["output"]["save_every"] = 2
    with pytest.raises(RuntimeError, match="injected") as info:
        train(cfg, samples=colour_samples(16), callbacks=[FailingUpdate()])
    newest = Path(cfg["output"]["dir"]) / "checkpoints" / "step-00000002"
    assert info.value.__notes__ == [
        "training stopped at this error in step 4 of 6, inside its optimizer step, which may have updated some weights "
        f"and not others, so no checkpoint was saved; the newest checkpoint is {newest}: --resume continues from it"]
    assert latest_checkpoint(cfg["output"]["dir"]) == newest
    assert sorted(p.name for p in newest.parent.iterdir()) == ["latest", "step-00000002"]


@pytest.mark.parametrize("part", ["_loss", "_save_best"])  # in the model's forward; writing best/ (a full disk)
def test_an_error_in_a_validation_saves_its_step_and_the_resumed_run_validates_it(tmp_path, monkeypatch, part):
    full = train(val_config(tmp_path, "full", val_every=2))
    assert full.metrics["validation"]["best_step"] == 6  # step 4's validation writes best/ too
    cfg = val_config(tmp_path, "failed", val_every=2)
    method = getattr(Validation, part)
    failed = []

    def failing_at_step_4(self, trainer, *args):
        if trainer.global_step == 4 and not failed:
            failed.append(4)
            raise RuntimeError("a custom encoder failed (injected)")
        return method(self, trainer, *args)

    monkeypatch.setattr(Validation, part, failing_at_step_4)
    with pytest.raises(RuntimeError, match="injected") as info:
        train(cfg)
    run = Path(cfg["output"]["dir"])
    assert info.value.__notes__ == [f"training stopped at this error after step 4 of 6; the checkpoint of step 4, the "
                                    f"last completed, is saved to {run / 'checkpoints' / 'step-00000004'}: --resume "
                                    "continues from it"]
    saved = torch.load(latest_checkpoint(run) / "training_state.ckpt", weights_only=True)["callbacks"]["Validation"]
    assert [row["step"] for row in saved["history"]] == [2]  # the failed validation is no part of it
    resumed = train(cfg, resume=True)
    assert resumed.metrics["validation"] == full.metrics["validation"]
    record = json.loads((run / "best" / "validation.json").read_text())
    assert record == json.loads((Path(full.output_dir) / "best" / "validation.json").read_text())
    a, b = load_file(str(full.final_dir / "model.safetensors")), load_file(str(resumed.final_dir / "model.safetensors"))
    assert_same_weights(a, b)
    a, b = load_file(str(full.output_dir / "best" / "model.safetensors")), load_file(str(run / "best" / "model.safetensors"))
    assert_same_weights(a, b)


def test_a_failing_save_after_an_error_leaves_that_error_the_one_raised(tmp_path, monkeypatch):
    import errno

    import modrwkv.training.checkpoint as checkpoint
    from modrwkv.training.module import ModRWKVModule

    step = ModRWKVModule.training_step

    def failing_step_3(self, batch, batch_idx):
        if self.global_step == 2:
            monkeypatch.setattr(checkpoint, "export_model", full_disk)  # the disk fills up as step 3 fails
            raise RuntimeError("an encoder failed (injected)")
        return step(self, batch, batch_idx)

    def full_disk(model, folder, *args):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(ModRWKVModule, "training_step", failing_step_3)
    cfg = config(tmp_path, "full", max_steps=4)
    with pytest.raises(RuntimeError, match="injected") as info:
        train(cfg, samples=colour_samples(16))
    [note] = info.value.__notes__
    assert note.startswith("training stopped at this error in step 3 of 4; saving the checkpoint of step 2 failed "
                           "too (OSError: [Errno 28] No space left on device; the checkpoint of step 2 was not saved")
    assert note.endswith("; the run has no checkpoint: start it again")
    assert list((Path(cfg["output"]["dir"]) / "checkpoints").iterdir()) == []  # its partial files deleted


def test_cli_names_the_error_and_the_checkpoint_in_one_line(tmp_path, monkeypatch, capsys):
    from modrwkv.training.module import ModRWKVModule

    cfg = config(tmp_path, "run", max_steps=6)
    cfg["data"] = {"format": "llava", "train": [str(write_llava(tmp_path, colour_samples(16)))]}
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    step = ModRWKVModule.training_step

    def out_of_memory_in_step_4(self, batch, batch_idx):
        if self.global_step == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ModRWKVModule, "training_step", out_of_memory_in_step_4)
    assert main(["train", str(tmp_path / "run.yaml")]) == 1
    err = capsys.readouterr().err
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000003"
    assert err.splitlines()[-1] == (
        "modrwkv train: error: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (injected) (-v shows "
        "where); training stopped at this error in step 4 of 6; the checkpoint of step 3, the last completed, is "
        f"saved to {checkpoint}: --resume continues from it")
    assert "Traceback" not in err
    monkeypatch.setattr(ModRWKVModule, "training_step", step)
    assert main(["train", str(tmp_path / "run.yaml"), "--resume"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("trained 6 steps: ")


def test_cli_puts_a_data_loader_workers_error_on_one_line(tmp_path, monkeypatch, capsys):
    """A data-loader worker's error carries the worker's traceback in its message (torch's
    ExceptionWrapper): the line names how it was caught and the error it ends with, not the traceback."""
    import modrwkv.training

    cfg = config(tmp_path, "run", max_steps=6)
    cfg["data"] = {"format": "llava", "train": [str(write_llava(tmp_path, colour_samples(4)))]}
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    caught = ("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
              '  File "worker.py", line 309, in _worker_loop\n    data = fetcher.fetch(index)\n'
              "ValueError: image 3 is 0 x 0 pixels\n")

    def worker_fails(*args, **kwargs):
        raise RuntimeError(caught)

    monkeypatch.setattr(modrwkv.training, "train", worker_fails)
    assert main(["train", str(tmp_path / "run.yaml")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "modrwkv train: error: RuntimeError: Caught ValueError in DataLoader worker process 0. ... ValueError: image 3 "
        "is 0 x 0 pixels (-v shows where)"]


# --- one process of several ---------------------------------------------------------------------------------------

# Two ranks x micro-batches of 2 x 2 accumulated (RANK_LAUNCHER's run with a batch of 8): one step a data pass.
ACCUMULATING = ("--train.batch_size", "8")


def outputs_of(ranks: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, str]]:
    """Each rank's (exit status, stdout, stderr) once it has ended, its stdin closed (RANK_LAUNCHER's failing rank
    then ends after its error, as `modrwkv train` does), in order; the test fails, every rank killed, if one still
    runs after `timeout` s."""
    outputs = []
    for rank in ranks:
        try:
            out, err = rank.communicate("", timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in ranks:
                other.kill()
            stderr = [other.communicate()[1][-1500:] for other in ranks]
            pytest.fail(f"a rank still ran after {timeout} s:\n{stderr[0]}\n{stderr[1]}")
        outputs.append((rank.returncode, out, err))
    return outputs


def four_steps(tmp_path: Path, *, fault: str | None = None, resume: bool = False,
               args: tuple[str, ...] = ()) -> list[tuple[int, str, str]]:
    """A two-rank DDP run of 4 accumulated steps (a checkpoint every 2) in tmp_path/run, given `args` too, failing as
    RANK_LAUNCHER's `fault` says (RANK:STEP:WRITE[:MICRO]); each rank's output once both have ended."""
    ranks = start_ranks(tmp_path, max_steps=4, output={"save_every": 2},
                        args=[*ACCUMULATING, *args, *["--resume"] * resume],
                        env={"MODRWKV_TEST_FULL_DISK": fault} if fault else {})
    # Rank 1 first: where it fails, rank 0 may wait for it in a collective until it ends.
    return outputs_of(ranks[::-1], timeout=120)[::-1]


def summary_loss(stdout: str) -> str:
    """`trained 4 steps: loss A -> B` of the run's closing line (without its tokens/s)."""
    return stdout.strip().splitlines()[-1].split(",")[0]


@pytest.fixture(scope="module")
def uninterrupted_ranks(tmp_path_factory) -> tuple[Path, str]:
    tmp_path = tmp_path_factory.mktemp("ranks")
    outputs = four_steps(tmp_path)
    assert [status for status, _, _ in outputs] == [0, 0], outputs[0][2][-3000:] + outputs[1][2][-3000:]
    return tmp_path / "run", summary_loss(outputs[0][1])


@pytest.mark.xdist_group("uninterrupted_ranks")  # one xdist worker trains the fixture's run, not each
@pytest.mark.parametrize("fault", ["1:4:forward:0", "1:4:forward:1", "1:4:backward:1"],
                         ids=["forward", "forward between accumulated micro-batches", "backward under reduction"])
def test_one_ranks_error_in_a_step_is_saved_by_that_rank_alone_and_resume_matches(uninterrupted_ranks, tmp_path, fault):
    """Rank 1 of a DDP run runs out of memory in step 4 (step 3 was not saved by save_every), leaving rank 0 in a
    collective: rank 1 writes step 3's checkpoint alone (DDP holds the whole model and optimizer state on every
    rank), rank 0's error once rank 1 has ended finds it, and both name it. Nothing used to be saved: the run lost
    everything since the last save_every checkpoint. --resume on two ranks ends as the uninterrupted run does.
    In the backward pass, DDP's buckets (rebuilt in the order the gradients came at step 1) put the head's first,
    alone: its reduction has begun when the embedding's gradient, the last, fails."""
    run, loss = uninterrupted_ranks
    outputs = four_steps(tmp_path, fault=fault)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000003"
    for rank, (status, _, err) in enumerate(outputs):
        assert status == 1 and err.splitlines()[-1].endswith(
            f"training stopped at this error in step 4 of 4; the checkpoint of step 3, the last completed, is saved to "
            f"{checkpoint}: --resume continues from it"), (rank, err[-3000:])
    assert outputs[1][2].splitlines()[-1].startswith(
        f"modrwkv train: error: OutOfMemoryError: CUDA out of memory (injected in the {fault.split(':')[2]} pass)")
    # Rank 0's own error: its collective's, as rank 1 ended ("Connection closed by peer", or a read error).
    last = outputs[0][2].splitlines()[-1]
    assert last.startswith("modrwkv train: error: RuntimeError: [") and "/gloo/" in last
    assert latest_checkpoint(tmp_path / "run") == checkpoint
    # Written alone, it holds what a checkpoint of both ranks holds (step 2's), and no temporary folder is left.
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["latest", "step-00000002", "step-00000003"]
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(p.name for p in checkpoint.with_name(
        "step-00000002").iterdir())
    saved = torch.load(checkpoint / "training_state.ckpt", weights_only=True)
    assert (saved["global_step"], saved["callbacks"]["RunTotals"]["recorded_steps"]) == (3, 3)

    outputs = four_steps(tmp_path, resume=True)
    assert [status for status, _, _ in outputs] == [0, 0], outputs[0][2][-3000:] + outputs[1][2][-3000:]
    assert summary_loss(outputs[0][1]) == loss  # the whole run's first and last loss
    assert_same_weights(load_file(str(tmp_path / "run" / "final" / "model.safetensors")),
                        load_file(str(run / "final" / "model.safetensors")))


# LoRA with dropout: every step draws random numbers, and the ranks draw different amounts (their micro-batches, of
# answers of different lengths, are padded to different lengths).
LORA_DROPOUT = ("--train.stage", "lora", "--train.lora.dropout", "0.1")


def final_files(run: Path) -> dict[str, torch.Tensor]:
    """The weights of a run's final/ (a LoRA run's: the base model's and lora.safetensors'), by file and name."""
    return {f"{path.name}:{key}": value for path in sorted((run / "final").glob("*.safetensors"))
            for key, value in load_file(str(path)).items()}


@pytest.fixture(scope="module")
def uninterrupted_lora_ranks(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("lora_ranks")
    outputs = four_steps(tmp_path, args=LORA_DROPOUT)
    assert [status for status, _, _ in outputs] == [0, 0], outputs[0][2][-3000:] + outputs[1][2][-3000:]
    return tmp_path / "run"


@pytest.mark.xdist_group("uninterrupted_lora_ranks")  # one xdist worker trains the fixture's run, not each
@pytest.mark.parametrize("saving", [(), ("--output.save_every", "0")],
                         ids=["checkpoint of both ranks", "checkpoint of one rank alone"])
def test_a_resumed_ddp_run_draws_on_every_rank_what_the_uninterrupted_one_does(uninterrupted_lora_ranks, tmp_path,
                                                                               saving):
    """A two-rank DDP run with LoRA dropout, stopped by rank 1's error in step 3 and resumed on two ranks from step
    2's checkpoint (save_every's, written by both ranks; or, without save_every, the one rank 1 wrote alone at its
    error), ends with the uninterrupted run's weights bit for bit: each rank draws the dropout masks it drew in the
    uninterrupted run. The checkpoint used to hold one process's random-number state (rank 0's, or the one's that
    wrote it alone), which every rank restored: the other, which had drawn other amounts, then drew other masks."""
    outputs = four_steps(tmp_path, fault="1:3:forward:0", args=(*LORA_DROPOUT, *saving))
    assert [status for status, _, _ in outputs] == [1, 1]
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    assert latest_checkpoint(tmp_path / "run") == checkpoint, outputs[1][2][-3000:]
    assert ("saved to" in outputs[1][2].splitlines()[-1]) == bool(saving)  # rank 1 wrote it, or found save_every's
    outputs = four_steps(tmp_path, resume=True, args=(*LORA_DROPOUT, *saving))
    assert [status for status, _, _ in outputs] == [0, 0], outputs[0][2][-3000:] + outputs[1][2][-3000:]
    assert_same_weights(final_files(tmp_path / "run"), final_files(uninterrupted_lora_ranks))


def test_ranks_failing_in_the_same_step_each_save_it_alone_and_one_checkpoint_is_kept(tmp_path):
    """Both ranks run out of memory in step 4 (long samples on each): neither waits for the other, each writes step
    3's checkpoint alone, and the one complete checkpoint both name is left, without a temporary folder."""
    outputs = four_steps(tmp_path, fault="0,1:4:forward:0")
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000003"
    for rank, (status, _, err) in enumerate(outputs):
        assert status == 1 and err.splitlines()[-1] == (
            "modrwkv train: error: OutOfMemoryError: CUDA out of memory (injected in the forward pass) (-v shows "
            "where); training stopped at this error in step 4 of 4; the checkpoint of step 3, the last completed, is "
            f"saved to {checkpoint}: --resume continues from it"), (rank, err[-3000:])
    assert latest_checkpoint(tmp_path / "run") == checkpoint
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["latest", "step-00000002", "step-00000003"]
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(p.name for p in checkpoint.with_name(
        "step-00000002").iterdir())


def test_one_ranks_error_at_a_step_end_while_the_others_save_that_step_is_saved_once_and_named_by_all(tmp_path):
    """Rank 1's step-end work fails after step 2's update, before that step's save_every checkpoint: it writes the
    checkpoint alone, while rank 0 waits for it in the save's first collective. That collective's error on rank 0
    is not the save's own: rank 0 deletes its partial folder and finds (or writes) the step's checkpoint alone,
    and both name it. Rank 0 used to end without a note, leaving .step-00000002.tmp behind for good."""
    outputs = four_steps(tmp_path, fault="1:2:step_end")
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    for rank, (status, _, err) in enumerate(outputs):
        assert status == 1 and err.splitlines()[-1].endswith(
            f"training stopped at this error after step 2 of 4; the checkpoint of step 2, the last completed, is saved "
            f"to {checkpoint}: --resume continues from it"), (rank, err[-3000:])
    assert "RuntimeError: a step-end callback failed (injected)" in outputs[1][2].splitlines()[-1]
    assert latest_checkpoint(tmp_path / "run") == checkpoint
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["latest", "step-00000002"]
    saved = torch.load(checkpoint / "training_state.ckpt", weights_only=True)
    assert saved["global_step"] == 2


def test_a_save_deletes_the_temporary_folders_of_older_steps(tmp_path):
    """A process that wrote a checkpoint alone may be ended mid-write (Lightning's launcher ends every process once
    one fails), leaving its temporary folder: the next save deletes those of older steps, not its own step's."""
    cfg = config(tmp_path, "run", max_steps=4)
    cfg["output"]["save_every"] = 2
    root = tmp_path / "run" / "checkpoints"

    class LeftOver(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            for name in (".step-00000001.rank0.tmp", ".step-00000001.tmp", ".step-00000003.rank1.tmp"):
                (root / name).mkdir(parents=True)
                (root / name / "model.safetensors").write_bytes(b"partial")

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3:  # step 2's save deleted step 1's, and left step 3's
                self.seen = sorted(p.name for p in root.iterdir())

    left_over = LeftOver()
    train(cfg, samples=colour_samples(8), callbacks=[left_over])
    assert left_over.seen == [".step-00000003.rank1.tmp", "latest", "step-00000002"]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000002", "step-00000004"]


@pytest.mark.parametrize("strategy", [FSDPStrategy(), DeepSpeedStrategy.__new__(DeepSpeedStrategy)],
                         ids=["fsdp", "deepspeed"])  # (an instance for its class: DeepSpeed may not be installed)
def test_one_ranks_error_in_a_step_of_a_sharded_run_saves_nothing_and_says_why(tmp_path, strategy):
    """Each process of a sharded run holds part of the weights and the optimizer state only: none can write the
    checkpoint alone, and the note says so and names the newest checkpoint."""
    from types import SimpleNamespace

    from modrwkv.training.checkpoint import PretrainedCheckpoint
    from modrwkv.training.progress import SaveOnError

    newest = tmp_path / "checkpoints" / "step-00000002"
    newest.mkdir(parents=True)
    (newest / "training_state.ckpt").write_bytes(b"")
    (tmp_path / "checkpoints" / "latest").write_text(newest.name)
    checkpointer = PretrainedCheckpoint(tmp_path, save_every=2, keep_last=2, total_steps=6, lora=None)
    checkpointer.last_saved = 2
    saver = SaveOnError(checkpointer)
    saver._started = True
    error = torch.OutOfMemoryError("CUDA out of memory")
    trainer = SimpleNamespace(world_size=2, global_step=3, strategy=strategy)
    saver.on_exception(trainer, None, error)  # type: ignore[arg-type]
    assert error.__notes__ == [
        f"training stopped at this error in step 4 of 6; no checkpoint was saved: under {type(strategy).__name__} "
        "each of the 2 processes holds only its part of the weights and optimizer state, so they can only write it "
        f"together, and the others may be waiting for this one in a collective it left; the newest checkpoint is "
        f"{newest}: --resume continues from it"]


def test_of_processes_writing_one_checkpoint_alone_the_first_complete_one_is_kept(tmp_path):
    """DDP processes that fail at once each write the step's checkpoint alone, under a name of their own: the first
    to finish renames its folder to the step's, and the next finds it there and deletes its own (the rename fails
    onto a folder that is not empty, so none replaces one another may be reading)."""
    from modrwkv.training.checkpoint import claim_folder

    folder = tmp_path / "step-00000003"
    for rank in (0, 1):
        tmp = tmp_path / f".step-00000003.rank{rank}.tmp"
        tmp.mkdir()
        (tmp / "training_state.ckpt").write_text(f"rank {rank}")
        claim_folder(tmp, folder)
        assert not tmp.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000003"]
    assert (folder / "training_state.ckpt").read_text() == "rank 0"

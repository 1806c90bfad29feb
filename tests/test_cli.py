"""The `modrwkv` command line, on a tiny random checkpoint with the World vocabulary."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from modrwkv import __version__
from modrwkv.cli import main
from modrwkv.generation import SamplingParams, generate
from modrwkv.lm import RWKV7Config, RWKV7State, load_model
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.tokenizer import WorldTokenizer
import warm_start  # noqa: E402  (tests/)

ROOT = Path(__file__).resolve().parents[1]

CONFIG = RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, head_size=64, dim_w=32, dim_a=32, dim_v=32, dim_g=32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny-world.pth"
    torch.save(random_official_state_dict(CONFIG, seed=1), path)
    return str(path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return warm_start.run(["-m", "modrwkv.cli", *args], text=True, env=env, timeout=120)


def test_generate_subprocess_prints_the_completion_and_saves_state(checkpoint, tmp_path):
    state_path = tmp_path / "after.safetensors"
    proc = run_cli("generate", "--model", checkpoint, "--prompt", "User: hi\\n\\nAssistant:",
                   "--max-new-tokens", "6", "--temperature", "0", "--save-state", str(state_path))
    assert proc.returncode == 0, proc.stderr
    model = load_model(checkpoint)
    params = SamplingParams(temperature=0, max_new_tokens=6)
    expected = generate(model, WorldTokenizer(), "User: hi\n\nAssistant:", params)
    assert proc.stdout == expected.text + "\n"
    saved = RWKV7State.load(state_path, CONFIG)
    torch.testing.assert_close(saved.wkv, expected.state.wkv, atol=1e-5, rtol=1e-5)


def test_generate_subprocess_missing_model_is_one_line_exit_2(tmp_path):
    proc = run_cli("generate", "--model", str(tmp_path / "nope.pth"), "--prompt", "hi")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "no checkpoint" in proc.stderr


def test_stream_from_loaded_state_in_process(checkpoint, tmp_path, capsys):
    model, tokenizer = load_model(checkpoint), WorldTokenizer()
    start = generate(model, tokenizer, "Once upon", SamplingParams(temperature=0, max_new_tokens=3)).state
    start.save(tmp_path / "start.safetensors")
    params = SamplingParams(seed=7, top_p=0.8, max_new_tokens=8, stop_strings=("\n\n",))
    expected = generate(model, tokenizer, " a time", params, state=start)

    code = main([
        "generate", "--model", checkpoint, "--prompt", " a time", "--stream", "--seed", "7", "--top-p", "0.8",
        "--max-new-tokens", "8", "--stop", "\\n\\n", "--load-state", str(tmp_path / "start.safetensors"),
    ])
    assert code == 0
    assert capsys.readouterr().out == expected.text + "\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top-p", "2"], "top_p must lie in (0, 1]"),
        (["--max-new-tokens", "0"], "max_new_tokens"),
        (["--load-state", "/nonexistent/state.safetensors"], "no such file"),
        (["--stop", "\\x1"], "bad backslash escape"),
    ],
)
def test_bad_values_are_one_line_errors(checkpoint, capsys, args, message):
    assert main(["generate", "--model", checkpoint, "--prompt", "hi", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_generate_from_a_modrwkv_folder_uses_its_lm(tmp_path, capsys):
    """The README's promise: `generate --model` takes a folder written by modrwkv, including a
    ModRWKV one (text-only generation with its LM)."""
    from conftest import make_model

    from modrwkv.encoders import build_encoder
    from modrwkv.multimodal import ModRWKV

    model = ModRWKV.build(make_model(CONFIG, seed=3), {"series": build_encoder("wavenet", layers=2, output_dim=24)})
    model.save_pretrained(tmp_path / "mm")
    params = SamplingParams(temperature=0, max_new_tokens=6)
    expected = generate(model.lm, WorldTokenizer(), "User: hi", params)
    assert main(["generate", "--model", str(tmp_path / "mm"), "--prompt", "User: hi", "--temperature", "0",
                 "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out == expected.text + "\n"


def test_generate_refuses_a_batch_state(checkpoint, tmp_path, capsys):
    load_model(checkpoint).init_state(2).save(tmp_path / "two.state")
    assert main(["generate", "--model", checkpoint, "--prompt", "hi", "--load-state", str(tmp_path / "two.state")]) == 2
    err = capsys.readouterr().err
    assert "two.state holds a batch of 2 states; generate continues one prompt from one state" in err
    assert err.count("\n") == 1


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "hi"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--model" in err and err.count("\n") == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"modrwkv {__version__}"


# Two tests check the same `modrwkv quickstart` run (one uninterrupted run of these options) and share it: it is
# run once, and xdist_group keeps both tests on one worker. Stages 0 and 1 make 2 steps and stage 2 makes 12,
# room for a signal part-way through it; the validation set makes each stage keep its best weights.
QUICKSTART_OPTIONS = ["--encoder-steps", "2", "--stage0-steps", "2", "--stage1-steps", "2", "--steps", "12",
                      "--train-samples", "32", "--test-samples", "16", "--validation-samples", "16", "--batch-size", "8",
                      "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted_quickstart(tmp_path_factory):
    """The uninterrupted `modrwkv quickstart` of QUICKSTART_OPTIONS, in a process of its own (one thread): it
    starts with the first test that asks for it and runs on the other core meanwhile. Calling the value waits
    for it to end (successfully) and returns its output folder and what it printed on stdout."""
    folder = tmp_path_factory.mktemp("quickstart")
    output = folder / "uninterrupted"
    with open(folder / "stdout.log", "w") as out, open(folder / "stderr.log", "w") as err:
        proc = warm_start.popen(["-m", "modrwkv", "quickstart", "--output", str(output), *QUICKSTART_OPTIONS],
                                stdout=out, stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def finished() -> tuple[Path, str]:
        assert proc.wait(timeout=300) == 0, (folder / "stderr.log").read_text()[-3000:]
        return output, (folder / "stdout.log").read_text()

    yield finished
    proc.kill()
    proc.wait()


@pytest.mark.xdist_group("uninterrupted_quickstart")
def test_an_interrupted_quickstart_run_again_continues_where_it_stopped(capsys, tmp_path, one_torch_thread,
                                                                        uninterrupted_quickstart):
    """SIGTERM in stage 2 of a real `modrwkv quickstart`: it used to say that it could not resume. Run
    again, the same command skips the completed stages and resumes stage 2 from the checkpoint the
    signal left, and ends with what an uninterrupted run gives; other options are refused by name."""
    options = QUICKSTART_OPTIONS
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    output = tmp_path / "qs"
    first_started = time.monotonic()
    proc = warm_start.popen(["-m", "modrwkv", "-v", "quickstart", "--output", str(output), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while "step 10/12 |" not in (line := proc.stderr.readline()):  # stage 2's; stages 0 and 1 make 2 steps
            assert line, proc.stdout.read()
        proc.send_signal(signal.SIGTERM)  # during step 11
        out, err = proc.communicate(timeout=120)
        first_wall = time.monotonic() - first_started
        uninterrupted, _ = uninterrupted_quickstart()  # the run to compare with
    finally:  # it has ended here, unless an assertion failed
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == ("modrwkv quickstart: stage 2 stopped by SIGTERM at step 11 of 12, checkpoint "
                                            "saved; run the same command again to continue from there")
    done = {path: path.stat().st_mtime_ns for path in output.glob("stage[01]/final/*")}
    checkpoint = output / "stage2" / "checkpoints" / "step-00000011"
    assert len(done) > 4 and checkpoint.is_dir()
    first_part = torch.load(checkpoint / "training_state.ckpt", weights_only=True)["callbacks"]["RunTotals"]
    first_seconds = json.loads((output / "quickstart.json").read_text())["seconds"]  # the stopped process's time
    trained_first = sum(json.loads((output / "quickstart.json").read_text())["results"][f"stage{i}"]["seconds"]
                        for i in (0, 1)) + first_part["seconds"]
    assert trained_first < first_seconds < first_wall
    assert not (output / "stage0" / "checkpoints").exists() and not (output / "stage1" / "checkpoints").exists()
    # As a kill right after stage 1's record would leave it: the rerun, skipping stage 1, deletes it.
    shutil.copytree(output / "stage2" / "checkpoints", output / "stage1" / "checkpoints")
    capsys.readouterr()

    assert main(["quickstart", "--output", str(output), *options[:-1], "--seed", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"modrwkv quickstart: error: {output} holds a quickstart started with other options: --seed 0 (now 1). Run it "
        "with the options it was started with to continue it, add --restart to start it over (its folder is deleted), "
        "or choose another --output")

    assert main(["quickstart", "--output", str(output), *options]) == 0
    report = json.loads((output / "report.json").read_text())
    expected = json.loads((uninterrupted / "report.json").read_text())
    assert {path: path.stat().st_mtime_ns for path in output.glob("stage[01]/final/*")} == done  # not trained again
    assert not (output / "stage1" / "logs" / "version_1").exists() and (output / "stage2" / "logs" / "version_1").is_dir()
    assert not list(output.rglob("checkpoints")) and not (output / "stage2" / "final").exists()
    stage2 = report["training"]["stage2"]
    assert stage2["resumed_from_step"] == 11 and stage2["steps"] == 12
    for key in ("accuracy", "text_only_model", "examples"):
        assert report[key] == expected[key], key
    for stage in ("vision_encoder", "stage0", "stage1"):
        ours, theirs = report["training"][stage], expected["training"][stage]
        assert {k: ours[k] for k in ours if "seconds" not in k and "per_s" not in k} == {
            k: theirs[k] for k in theirs if "seconds" not in k and "per_s" not in k}, stage
    assert stage2["validation"] == expected["training"]["stage2"]["validation"]
    assert stage2["final_loss"] == pytest.approx(expected["training"]["stage2"]["final_loss"], rel=1e-5)
    # The stage's numbers are the whole stage's, both processes' parts: they used to cover steps 12-12 only.
    assert stage2["first_loss"] == expected["training"]["stage2"]["first_loss"]
    assert stage2["tokens"] == expected["training"]["stage2"]["tokens"] > first_part["tokens"]
    assert stage2["seconds"] > first_part["seconds"]  # tokens/s over both parts: test_training.py's signal test
    # So are the totals: they used to be the second process's alone, less than its stages' seconds.
    assert report["train_seconds"] >= sum(report["training"][f"stage{i}"]["seconds"] for i in range(3))
    assert report["total_seconds"] >= report["train_seconds"]
    assert report["total_seconds"] >= first_seconds + stage2["seconds"] - first_part["seconds"]
    from safetensors.torch import load_file

    ours, theirs = load_file(str(output / "model" / "model.safetensors")), load_file(
        str(uninterrupted / "model" / "model.safetensors"))
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)


@pytest.mark.xdist_group("uninterrupted_quickstart")
def test_quickstart_runs_end_to_end_at_small_scale(capsys, uninterrupted_quickstart):
    """The real recipe at toy scale: both stages, evaluation, examples, a loadable saved model."""
    output, out = uninterrupted_quickstart()
    assert "image/colour" in out and "text-only best" in out and "model saved to" in out
    report = json.loads((output / "report.json").read_text())
    assert [report["training"][f"stage{i}"]["steps"] for i in range(3)] == [2, 2, 12]
    assert report["training"]["vision_encoder"]["steps"] == 2 and "per-cell accuracy" in out
    assert sum(report["count"].values()) == 16
    from modrwkv.multimodal import ModRWKV

    assert set(ModRWKV.from_pretrained(output / "model").encoders) == {"image", "series"}
    # One model per stage is left (stage 2's is model/); the checkpoints only resuming needed are gone.
    weights = sorted(str(path.parent.relative_to(output)) for path in output.rglob("model.safetensors")
                     if "encoders" not in path.parts)
    assert weights == ["model", "stage0/final", "stage1/final"] and not list(output.rglob("*.ckpt"))
    example = report["example_image"]  # the README's chat command works as printed
    assert f"modrwkv chat --model {output / 'model'} --image {output / 'shapes.png'}" in out
    # and asks as the model was trained: the saved model records the layout of the quickstart's user turns,
    # so that a question with the image and no marker (what chat sends) is asked question, image, question
    from modrwkv.data.sample import Sample
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.quickstart.data import generate_samples
    from modrwkv.quickstart.run import _question

    assert json.loads((output / "model" / "config.json").read_text())["media_layout"] == "text_media_text"
    pipe = ModRWKVPipeline.from_pretrained(output / "model")
    for sample in [s for s in generate_samples(12, 5) if s.images][:2] + [s for s in generate_samples(12, 5) if s.series][:1]:
        trained = pipe.processor(Sample(sample.messages[:1], images=sample.images, series=sample.series),
                                 add_generation_prompt=True).input_ids.tolist()
        assert list(pipe.encode(_question(sample), images=sample.images, series=sample.series).ids) == trained
    with Image.open(example["path"]) as scene:
        assert scene.size == (64, 64) and "<image>" not in example["question"] and "\n" not in example["question"]
    assert main(["quickstart", "--output", str(output), *QUICKSTART_OPTIONS]) == 0  # run again: nothing trained
    again = capsys.readouterr().out
    assert f"{output} holds this quickstart, finished" in again and "image/colour" in again
    assert not (output / "stage0" / "logs" / "version_1").exists()


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every `modrwkv ...` line of a shell block in README.md, docs/ and configs/README.md."""
    commands = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "configs" / "README.md"]:
        for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix(".venv/bin/")
                if (line.startswith("modrwkv ") and "[" not in line.split("#")[0]  # not a synopsis
                        and not line.split()[1].endswith(":")):  # nor printed output ("modrwkv chat: error: ...")
                    words = shlex.split(line, comments=True)
                    commands.append((doc.name, words[1:words.index("&&")] if "&&" in words else words[1:]))
    return commands


def test_every_documented_command_parses_and_the_client_asks_for_the_served_model():
    from modrwkv.cli import build_parser

    commands = _documented_commands()
    assert len(commands) > 20
    for doc, words in commands:
        try:
            build_parser().parse_args([w for w in words if w != "&"])
        except SystemExit:
            pytest.fail(f"{doc}: modrwkv {shlex.join(words)} does not parse")
    readme = (ROOT / "README.md").read_text()
    serve = next(words for doc, words in commands if doc == "README.md" and words[0] == "serve")
    served = serve[serve.index("--model-name") + 1] if "--model-name" in serve else Path(
        serve[serve.index("--model") + 1]).name  # the server's default name: the model folder's
    assert f'client.chat.completions.create(model="{served}"' in readme


def test_generate_into_a_closed_pipe_ends_quietly(checkpoint):
    """`modrwkv generate ... --stream | head -c 1` used to end with "modrwkv generate: error: [Errno 32]
    Broken pipe"; a reader that stops early now ends the command without a word, with the status a
    Unix tool killed by SIGPIPE has (141)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ["-m", "modrwkv.cli", "generate", "--model", checkpoint, "--prompt", "hi",
               "--max-new-tokens", "200", "--stream", "--temperature", "1", "--seed", "0"]
    proc = warm_start.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.read(1)  # the reader takes one byte, then goes away
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert stderr == ""

"""The documentation against the code: what a user copies from README.md, docs/*.md and
configs/README.md must work as written.

- every `modrwkv ...` command (fenced shell blocks, `$ `-prompted lines, and inline `modrwkv ...`
  code spans) names a real subcommand and real options with values of the right kind, and a fenced
  command parses with the real argparse parser (placeholders such as MODEL or N stand for a value);
  `train`'s `--dotted.key value` overrides name real config keys with values of the right type;
- every YAML config in the docs and every configs/*.yaml validates with the config loader (the paths
  they name may be missing), encoder options included;
- every Python snippet compiles, its `from modrwkv... import X` names exist, and the keyword arguments
  it passes to modrwkv functions and methods exist;
- every relative link points at an existing file and heading anchor (GitHub's anchor rules);
- every bench/, scripts/, configs/, docs/ and tests/ path mentioned exists, and the options given to
  `python bench/...` scripts are options those scripts declare;
- every `--option` the prose names is an option of some command (or a config key, or a bench/
  script's option), and every JSON record shown is of the format its section names;
- interop.md's table of pip extras names what pyproject.toml's extras install;
- a block that trains reads back (`--model runs/X/final`) only the run folders its `init` and `train`
  commands write.

Nothing here runs a command or loads a model: the checks take about a second once modrwkv is imported.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import io
import json
import re
import shlex
import typing
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import yaml

from modrwkv.cli import build_parser
from modrwkv.encoders import ENCODERS, encoder_options
from modrwkv.sampling_params import SamplingParams
from modrwkv.training.config import ConfigError, TrainConfig, apply_overrides, config_from_dict, load_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "configs" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell"}  # a script; any other block (console, text) is a session: its
# `$ ` lines are commands, the rest is output, which need not read as shell (it's, unclosed quotes)
SEPARATORS = {"&&", "||", "|", ";", "&"}


@dataclass(frozen=True)
class Snippet:
    where: str  # "docs/x.md:12", the line the snippet starts on
    text: str


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _fenced_blocks(path: Path) -> Iterator[tuple[str, Snippet]]:
    """(language, block) for every fenced code block of a markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start, language = None, ""
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if start is None and stripped.startswith("```"):
            start, language = number, stripped[3:].strip().lower()
        elif start is not None and stripped == "```":
            yield language, Snippet(f"{_relative(path)}:{start}", "\n".join(lines[start:number - 1]))
            start = None


def _prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a markdown file outside its fenced code blocks."""
    inside = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith("```"):
            inside = not inside
        elif not inside:
            yield number, line


def _blocks(*languages: str) -> list[Snippet]:
    return [block for path in DOCS for language, block in _fenced_blocks(path) if language in languages]


def _shell_blocks(paths: list[Path]) -> Iterator[Snippet]:
    """The shell text of every fenced block: a script whole, a session's `$ ` lines."""
    for path in paths:
        for language, block in _fenced_blocks(path):
            text = block.text if language in SHELL_LANGUAGES else "\n".join(
                line for line in block.text.splitlines() if line.startswith("$ "))
            yield Snippet(block.where, text)


# --- modrwkv command lines ------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    where: str
    argv: tuple[str, ...]  # after `modrwkv`
    complete: bool  # a whole command (fenced block), not a fragment quoted in prose


def _shell_commands(text: str, where: str) -> Iterator[list[str]]:
    """The simple commands of a shell text: continuations joined, comments dropped, split at
    `&&`, `|`, `;` and `&`; a synopsis's optional parts (`[--limit N]`) are kept, brackets removed."""
    pending = ""
    for line in text.replace("\\\n", " ").splitlines():
        line = pending + line.strip()
        if line.startswith("$ "):
            line = line[2:]
        line = re.sub(r"\[(-[^\[\]]*)\]", r"\1", line)  # a synopsis's optional part: [--limit N]
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # a quoted string goes on over the next line (curl -d '{...')
            pending = line + "\n"
            continue
        pending = ""
        command: list[str] = []
        for token in tokens:
            ends = token.endswith(";") and token != ";"
            token = token.rstrip(";") if ends else token
            if token in SEPARATORS:
                yield command
                command = []
                continue
            if token:
                command.append(token)
            if ends:
                yield command
                command = []
        yield command
    if pending:
        raise ValueError(f"{where}: a quotation that never closes: {pending[:80]!r}")


def _modrwkv_argv(tokens: list[str]) -> list[str] | None:
    """The arguments after the `modrwkv` program (or .venv/bin/modrwkv), after any VAR=value prefix."""
    while tokens and re.fullmatch(r"[A-Za-z_]\w*=\S*", tokens[0]):
        tokens = tokens[1:]
    if tokens and (tokens[0] == "modrwkv" or tokens[0].endswith("/modrwkv")):
        return tokens[1:]
    return None


def _commands(paths: list[Path] = DOCS) -> list[Command]:
    commands = []
    for block in _shell_blocks(paths):
        for tokens in _shell_commands(block.text, block.where):
            argv = _modrwkv_argv(tokens)
            if argv is not None:
                commands.append(Command(block.where, tuple(argv), complete=True))
    for path in paths:
        for number, line in _prose(path):
            for span in re.findall(r"`(modrwkv [^`]*)`", line):
                for tokens in _shell_commands(span, f"{_relative(path)}:{number}"):
                    argv = _modrwkv_argv(tokens)
                    # "modrwkv serve: error: ..." quotes a message, not a command
                    if argv is not None and not (argv and argv[0].endswith(":")):
                        commands.append(Command(f"{_relative(path)}:{number}", tuple(argv), complete=False))
    return commands


COMMANDS = _commands()
PARSER = build_parser()
SUBCOMMANDS: dict[str, argparse.ArgumentParser] = next(
    action.choices for action in PARSER._actions if isinstance(action, argparse._SubParsersAction))


def _is_placeholder(value: str) -> bool:
    """MODEL, N, NAME=VALUE, $i, "...": a value the reader fills in."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(=[A-Z][A-Z0-9_]*)?|\$\w+|\.\.\.", value))


def _sample_value(action: argparse.Action, value: str) -> str:
    """`value`, or for a placeholder a value of the kind the option takes."""
    if not _is_placeholder(value):
        return value
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type is int:
        return "1"
    if action.type is float:
        return "1.0"
    if action.type is not None:
        for candidate in ("1", "1.0", "8000"):
            try:
                action.type(candidate)
                return candidate
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                pass
    return value


def _check_value(action: argparse.Action, value: str) -> str | None:
    """What is wrong with `value` for `action`, or None."""
    if _is_placeholder(value):
        return None
    alternatives = value.split("|") if action.choices and "|" in value else [value]  # a synopsis: exact|vqa
    for alternative in alternatives:
        converted: object = alternative
        if action.type is not None:
            try:
                converted = action.type(alternative)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
                return f"{alternative!r} is not a valid value ({exc})"
        if action.choices and converted not in action.choices:
            return f"{alternative!r} is not one of {list(action.choices)}"
    return None


def _walk_options(parser: argparse.ArgumentParser, argv: list[str], stop_at_override: bool = False,
                  fragment: bool = False) -> tuple[list[str], list[str], list[str]]:
    """Checks every option in `argv` against `parser` by its exact name (argparse would also accept an
    abbreviation, which a doc must not rely on). Returns (problems, argv with placeholders replaced by
    sample values, leftover tokens from the first unknown `--dotted.key` when `stop_at_override`).
    `fragment`: an option quoted in prose (`chat --audio`) may stand without its value."""
    options = {name: action for action in parser._actions for name in action.option_strings}
    problems, filled = [], []
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if token == "..." or not token.startswith("-") or re.fullmatch(r"-\d.*", token):
            filled.append(token)
            continue
        name, has_inline, inline = token.partition("=")
        action = options.get(name)
        if action is None:
            if stop_at_override and name.startswith("--") and "." in name:
                return problems, filled, argv[index - 1:]
            problems.append(f"no option {name}")
            continue
        if action.nargs == 0:
            filled.append(name)
            continue
        values = [inline] if has_inline else []
        while not has_inline and index < len(argv) and not (argv[index].startswith("-") and argv[index] != "-"
                                                             and not re.fullmatch(r"-\d.*", argv[index])):
            values.append(argv[index])
            index += 1
            if action.nargs in (None, "?") or isinstance(action.nargs, int) and len(values) == action.nargs:
                break
        if not values and action.nargs not in ("?", "*") and not fragment:
            problems.append(f"{name} needs a value")
        for value in values:
            problem = _check_value(action, value)
            if problem:
                problems.append(f"{name}: {problem}")
        filled.extend([name, *(_sample_value(action, v) for v in values)])
    return problems, filled, []


def _check_overrides(config: str | None, overrides: list[str]) -> list[str]:
    """`train`'s --dotted.key value overrides, applied to CONFIG when it is a file of the repository."""
    pairs = [token for token in overrides if token != "..."]
    if pairs[:2] == ["--dotted.key", "value"]:  # configs/README.md's synopsis
        pairs = pairs[2:]
    path = ROOT / config if config and not _is_placeholder(config) else None
    try:
        if path is not None and path.is_file():
            train_config = load_config(path, pairs, needs_data=False)
        else:  # the reader's own config (mine.yaml): the keys and values alone
            train_config = config_from_dict(apply_overrides({}, pairs), needs_data=False, needs_model=False)
        _check_encoder_options(train_config)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _split_train_flags(parser: argparse.ArgumentParser, tokens: list[str]) -> tuple[list[str], list[str]]:
    """`train`'s own flags (with their values) and the --dotted.key value overrides among `tokens`."""
    flags = {name: action for action in parser._actions for name in action.option_strings}
    own, overrides = [], []
    index = 0
    while index < len(tokens):
        action = flags.get(tokens[index].partition("=")[0])
        width = 1 if action is None or action.nargs == 0 or "=" in tokens[index] else 2
        (own if action is not None else overrides).extend(tokens[index:index + width])
        index += width
    return own, overrides


def _problems(command: Command) -> list[str]:
    argv = list(command.argv)
    position = next((i for i, token in enumerate(argv) if not token.startswith("-")), len(argv))
    global_problems, before, _ = _walk_options(PARSER, argv[:position])  # -v: the program's own options
    if position == len(argv):
        return [*global_problems, "no subcommand"]
    name = argv[position]
    if name not in SUBCOMMANDS:
        return [f"no subcommand {name!r} (there are {sorted(SUBCOMMANDS)})"]
    problems, filled, overrides = _walk_options(SUBCOMMANDS[name], argv[position + 1:],
                                                stop_at_override=name == "train", fragment=not command.complete)
    problems = global_problems + problems
    if name == "train":
        config = next((token for token in filled if not token.startswith("-")), None)
        flags, overrides = _split_train_flags(SUBCOMMANDS[name], overrides)  # flags may follow the overrides
        flag_problems, flags, _ = _walk_options(SUBCOMMANDS[name], flags, fragment=not command.complete)
        problems += flag_problems + _check_overrides(config, overrides)
        filled += flags
    if command.complete and not problems and "..." not in command.argv:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                PARSER.parse_args([*before, name, *filled, *overrides])
        except SystemExit:
            problems.append(stderr.getvalue().strip())
    return problems


def test_the_docs_quote_commands():
    """The extraction finds the commands (a broken extractor would make every check below pass)."""
    names = {command.argv[0] for command in COMMANDS if command.argv and command.complete}
    assert {"generate", "chat", "serve", "train", "init", "eval", "export", "merge-lora", "import-released",
            "quickstart", "push-to-hub"} <= names
    assert len(COMMANDS) > 80


def test_a_sessions_output_is_not_read_as_commands(tmp_path):
    """A console block's output lines need not read as shell (an apostrophe, a line that starts with
    modrwkv); its `$ ` lines are the commands. A script's unclosed quotation is named by its block."""
    page = tmp_path / "page.md"
    page.write_text("```console\n$ modrwkv generate MODEL --image cat.png\nit's a cat\n"
                    "modrwkv serve: error: the following arguments are required\n```\n"
                    "```bash\nmodrwkv generate MODEL --prompt 'what is\n```\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(page))}:6: a quotation that never closes"):
        _commands([page])
    page.write_text(page.read_text().replace("'what is", "'what is'"))
    assert [command.argv for command in _commands([page])] == [
        ("generate", "MODEL", "--image", "cat.png"), ("generate", "MODEL", "--prompt", "what is")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.where} {' '.join(c.argv)[:60]}")
def test_documented_command_parses(command: Command):
    problems = _problems(command)
    assert not problems, f"{command.where}: `modrwkv {' '.join(command.argv)}`: {'; '.join(problems)}"


def test_a_renamed_option_is_caught():
    """The check fails on a real drift: an option the parser does not have, a value of the wrong kind,
    an abbreviation argparse would accept, an unknown config key and a mistyped config value."""
    def problems(argv: str, complete: bool = True) -> list[str]:
        return _problems(Command("x", tuple(shlex.split(argv)), complete))

    assert problems("eval --task custom --model M --data d.jsonl --limit 5") == []
    assert problems("eval --task custom --model M --data d.jsonl --max-samples 5") == ["no option --max-samples"]
    assert problems("eval --task custom --model M --data d.jsonl --limit five")
    assert problems("eval --task custom --model M --data d.jsonl --lim 5") == ["no option --lim"]
    assert problems("eval --task nonsense --model M --data d.jsonl")
    assert problems("eval --model M --data d.jsonl")  # --task is required
    assert problems("evaluate --model M")
    assert problems("train configs/tiny-cpu.yaml --train.learning_rate 1e-3")
    assert problems("train configs/tiny-cpu.yaml --train.max_steps many")
    assert problems("train mine.yaml --model.encoders.image.name tiny --model.encoders.image.options.size 16")
    assert problems("chat --model M --temperature") == ["--temperature needs a value"]
    assert problems("chat --temperature", complete=False) == []


def _option(argv: list[str], name: str) -> str | None:
    return next((argv[i + 1] for i, token in enumerate(argv[:-1]) if token == name), None)


def _run_folder_problems(block: Snippet) -> list[str]:
    """A block that writes run folders (`init`: runs/NAME, NAME from the data as init names it; `train`:
    the config's output.dir or `--output.dir`) reads back a run's `final/` or `best/` only from one of
    them: `modrwkv eval --model runs/X/final` after a `train` that wrote runs/Y is a command that fails."""
    from modrwkv.data.readers.base import data_name

    configs: dict[str, str] = {}  # config file -> the run folder it trains into
    written: set[str] = set()
    problems = []
    for tokens in _shell_commands(block.text, block.where):
        argv = _modrwkv_argv(tokens)
        if not argv:
            continue
        if argv[0] == "init" and (data := _option(argv, "--data")):
            run = _option(argv, "--run-dir") or f"runs/{data_name(data)}"
            configs[_option(argv, "--output") or f"{data_name(data)}.yaml"] = run
            written.add(run)
        elif argv[0] == "train" and len(argv) > 1:
            run = _option(argv, "--output.dir") or configs.get(argv[1])
            if run is None and (ROOT / argv[1]).is_file():  # a shipped config: its own output.dir
                run = (yaml.safe_load((ROOT / argv[1]).read_text()).get("output") or {}).get("dir")
            if run:
                written.add(run.rstrip("/"))
        elif (model := _option(argv, "--model")) and written and re.fullmatch(r"runs/.+/(final|best)", model) \
                and model.rsplit("/", 1)[0] not in written:
            problems.append(f"`modrwkv {' '.join(argv)[:80]}` reads {model}, but this block's runs go to "
                            f"{sorted(written)}")
    return problems


SHELL_BLOCKS = [block for block in _shell_blocks(DOCS) if "modrwkv" in block.text]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.where)
def test_a_block_reads_the_run_folders_it_writes(block: Snippet):
    problems = _run_folder_problems(block)
    assert not problems, f"{block.where}: {'; '.join(problems)}"


def test_a_wrong_run_folder_is_caught():
    """custom-data.md's Parquet block once evaluated runs/digits/final after training the config that
    `init --data data/digits-parquet/train.parquet` writes, whose runs go to runs/digits-parquet."""
    block = ("modrwkv init --data data/digits-parquet/train.parquet --output digits.yaml\n"
             "modrwkv train digits.yaml\n"
             "modrwkv eval --model {} --task custom --data data/digits-parquet/test.parquet\n")
    assert _run_folder_problems(Snippet("x", block.format("runs/digits-parquet/final"))) == []
    assert _run_folder_problems(Snippet("x", block.format("runs/digits/final")))
    trained = "modrwkv train configs/tiny-cpu.yaml\nmodrwkv chat --model runs/{}/final\n"
    assert _run_folder_problems(Snippet("x", trained.format("tiny-cpu"))) == []  # the config's output.dir
    assert _run_folder_problems(Snippet("x", trained.format("tiny")))


# --- YAML configs ----------------------------------------------------------------------------


def _check_encoder_options(config: TrainConfig) -> None:
    """Each encoder's options are options that encoder takes (the loader leaves them to `build_encoder`)."""
    for modality, spec in config.model.encoders.items():
        if spec.name not in ENCODERS:
            raise ConfigError(f"model.encoders.{modality}.name: unknown encoder {spec.name!r}")
        unknown = sorted(set(spec.options) - encoder_options(spec.name))
        if unknown:
            raise ConfigError(f"model.encoders.{modality}.options: {spec.name} has no option(s) {unknown}")


YAML_BLOCKS = _blocks("yaml", "yml")
CONFIG_FILES = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.where)
def test_documented_yaml_config_validates(block: Snippet):
    try:
        _check_encoder_options(config_from_dict(yaml.safe_load(block.text)))
    except ConfigError as exc:
        pytest.fail(f"{block.where}: {exc}")


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path):
    assert len(CONFIG_FILES) >= 9
    try:
        _check_encoder_options(load_config(path, needs_data=False))
    except ConfigError as exc:
        pytest.fail(str(exc))


# --- Python snippets -------------------------------------------------------------------------

PYTHON_BLOCKS = _blocks("python", "py")


def _modrwkv_names(tree: ast.Module, where: str) -> tuple[dict[str, object], list[str]]:
    """The modrwkv objects a snippet imports, by the name it binds, and the imports that fail."""
    names: dict[str, object] = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "modrwkv":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    problems.append(f"{where}: `from {node.module} import {alias.name}`: no such name")
                else:
                    names[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "modrwkv":
                    try:
                        importlib.import_module(alias.name)
                    except ImportError as exc:
                        problems.append(f"{where}: `import {alias.name}`: {exc}")
    return names, problems


def _returned_class(function: object) -> object | None:
    """The class a function or method returns, from its annotation (None when unknown)."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation that does not resolve here: no check rather than a wrong one
        return None
    kind = hints.get("return")
    return kind if inspect.isclass(kind) else None


def _keyword_problems(function: object, call: ast.Call, label: str) -> list[str]:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return []
    accepted = set(parameters)
    for parameter in parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            if parameter.name != "sampling":
                return []
            accepted |= {f.name for f in fields(SamplingParams)}  # the pipeline's **sampling
    return [f"`{label}(... {k.arg}=...)`: no parameter {k.arg!r}" for k in call.keywords
            if k.arg is not None and k.arg not in accepted]


def _python_problems(block: Snippet) -> list[str]:
    try:
        tree = ast.parse(block.text)
        compile(tree, block.where, "exec")
    except SyntaxError as exc:
        return [f"{block.where}: does not compile: {exc}"]
    known, problems = _modrwkv_names(tree, block.where)
    instances: dict[str, object] = {}  # variable -> the modrwkv class of its value
    for node in ast.walk(tree):  # assignments first: `pipe = ModRWKVPipeline.from_pretrained(...)`
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.targets) == 1:
            target, function = node.targets[0], _callee(node.value, known, instances)
            if isinstance(target, ast.Name) and function is not None:
                cls = function if inspect.isclass(function) else _returned_class(function)
                if cls is not None:
                    instances[target.id] = cls
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = _callee(node, known, instances)
            if function is None and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                owner = known.get(node.func.value.id) or instances.get(node.func.value.id)
                if owner is not None and inspect.isclass(owner) or inspect.ismodule(owner):
                    problems.append(f"{block.where}: {node.func.value.id}.{node.func.attr}: no such attribute")
            elif function is not None:
                label = ast.unparse(node.func)
                target = function.__init__ if inspect.isclass(function) else function
                problems += [f"{block.where}: {p}" for p in _keyword_problems(target, node, label)]
    return problems


def _callee(call: ast.Call, known: dict[str, object], instances: dict[str, object]) -> object | None:
    """The modrwkv function or class a call calls, when the snippet makes that plain."""
    func = call.func
    if isinstance(func, ast.Name):
        return known.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        owner = known.get(func.value.id) or instances.get(func.value.id)
        return getattr(owner, func.attr, None) if owner is not None else None
    return None


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where)
def test_documented_python_snippet(block: Snippet):
    problems = _python_problems(block)
    assert not problems, "\n".join(problems)


def test_python_check_catches_a_wrong_keyword():
    snippet = Snippet("x", "from modrwkv.inference import ModRWKVPipeline\n"
                      "pipe = ModRWKVPipeline.from_pretrained('m', initial_stat='s')\n"
                      "pipe.chat('hi', temprature=0)\npipe.chatter('hi')\n"
                      "from modrwkv.inference import NoSuchThing\n")
    problems = "\n".join(_python_problems(snippet))
    assert "initial_stat" in problems and "temprature" in problems and "chatter" in problems
    assert "NoSuchThing" in problems


# --- data records ----------------------------------------------------------------------------


def _json_records() -> list[tuple[Snippet, str | None]]:
    """Every JSON block of the docs, with the record format its section names (`**`qa`**` above it)."""
    found = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for language, block in _fenced_blocks(path):
            if language != "json":
                continue
            start = int(block.where.rsplit(":", 1)[1]) - 1
            named = None
            for line in reversed(lines[max(0, start - 20):start]):
                if line.startswith("```"):
                    break
                label = re.search(r"\*\*`(\w+)`\*\*", line)
                if label:
                    named = label.group(1)
                    break
            found.append((block, named))
    return found


JSON_RECORDS = _json_records()


@pytest.mark.parametrize("block, named", JSON_RECORDS, ids=[b.where for b, _ in JSON_RECORDS])
def test_documented_records_are_of_their_format(block: Snippet, named: str | None):
    """Each record shown (some wrapped over two lines) parses, and its fields are the format its section
    names, as `modrwkv init` and the readers tell formats apart (a row of the_cauldron's layout as the record it
    stands for)."""
    from modrwkv.data.readers.base import record_format
    from modrwkv.data.readers.hubrows import turns_record

    decoder, text, records = json.JSONDecoder(), block.text.strip(), []
    while text:
        record, end = decoder.raw_decode(text)
        records.append(record)
        text = text[end:].strip()
    assert records
    for record in records:
        detected = record_format(turns_record(record, block.where))
        assert detected is not None and detected == (named or detected), \
            f"{block.where}: {json.dumps(record)[:80]}... reads as {detected}, not {named}"


# --- pip extras ------------------------------------------------------------------------------


def _extras_table(text: str) -> dict[str, list[str]]:
    """interop.md's extras table: extra -> what its "adds" cell names (`av (PyAV)` -> `av`; for `[all]`,
    the extras it joins with `+`)."""
    rows = re.findall(r"^\| `\[([\w-]+)\]` \| ([^|]+) \|", text, re.M)
    return {extra: [re.sub(r"\s*\(.*\)$", "", item).strip() for item in re.split(r",|\+", cell)]
            for extra, cell in rows}


def _pyproject_extras() -> dict[str, list[str]]:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {extra: (re.search(r"\[(.*)\]", requirements[0])[1].split(",") if extra == "all"
                    else [re.match(r"[A-Za-z0-9_.-]+", requirement)[0] for requirement in requirements])
            for extra, requirements in extras.items()}


def test_the_extras_table_is_pyprojects():
    """Each extra interop.md lists adds what pyproject.toml says, and every extra `[all]` joins has a row:
    the table once lacked `[video]` and `[serve]`'s python-multipart."""
    table, extras = _extras_table((ROOT / "docs" / "interop.md").read_text()), _pyproject_extras()
    assert {"train", "serve", "all"} <= table.keys()
    for extra, listed in table.items():
        assert sorted(listed) == sorted(extras[extra]), f"docs/interop.md: [{extra}] adds {extras[extra]}"
    assert set(extras["all"]) <= table.keys()


# --- links and paths -------------------------------------------------------------------------


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: the heading's text, lower-cased, punctuation but `-` and `_` removed,
    spaces as hyphens; a repeated anchor gets -1, -2, ..."""
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in _prose(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # a link's text
        text = re.sub(r"[`*]", "", text)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links() -> list[tuple[str, Path, str, str]]:
    """(where, source file, target path, anchor) of every relative markdown link."""
    links = []
    for path in DOCS:
        for number, line in _prose(path):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                    continue
                file, _, anchor = target.partition("#")
                links.append((f"{_relative(path)}:{number}", path, file, anchor))
    return links


LINKS = _links()


def test_the_docs_have_links():
    assert sum(1 for *_, anchor in LINKS if anchor) >= 3 and len(LINKS) >= 20


@pytest.mark.parametrize("where, source, file, anchor", LINKS, ids=[f"{w} {f}#{a}" for w, _, f, a in LINKS])
def test_relative_link_resolves(where: str, source: Path, file: str, anchor: str):
    target = (source.parent / file).resolve() if file else source
    assert target.exists(), f"{where}: link to {file}: no such file"
    if anchor:
        assert target.suffix == ".md", f"{where}: an anchor into {file}, which is not markdown"
        anchors = _anchors(target)
        assert anchor in anchors, f"{where}: {file or target.name} has no heading #{anchor} (it has {sorted(anchors)})"


def test_anchor_rules():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "page.md"
        page.write_text("# Audio longer than 30 s\n## `--max-image-pixels` and you\n## Video\n## Video\n"
                        "```\n# not a heading\n```\n")
        assert _anchors(page) == {"audio-longer-than-30-s", "--max-image-pixels-and-you", "video", "video-1"}


# paths in other projects that the docs point to
OTHER_PROJECTS_PATHS = {"docs/Evaluation.md"}  # LLaVA's


def _mentioned_paths() -> list[tuple[str, str]]:
    paths = []
    pattern = re.compile(r"(?<![\w./-])((?:bench|scripts|configs|docs|tests)/[\w./*-]*[\w*])")
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for mentioned in sorted(set(pattern.findall(line)) - OTHER_PROJECTS_PATHS):
                paths.append((f"{_relative(path)}:{number}", mentioned))
    return paths


MENTIONED_PATHS = _mentioned_paths()


@pytest.mark.parametrize("where, mentioned", MENTIONED_PATHS, ids=[f"{w} {p}" for w, p in MENTIONED_PATHS])
def test_mentioned_path_exists(where: str, mentioned: str):
    assert list(ROOT.glob(mentioned)), f"{where}: {mentioned} does not exist"


def _bench_commands() -> list[tuple[str, str, list[str]]]:
    """(where, script, options) of every `python bench/... --option` command in a fenced shell block."""
    found = []
    for block in _shell_blocks(DOCS):
        for tokens in _shell_commands(block.text, block.where):
            if len(tokens) > 1 and tokens[0] in ("python", "python3") and tokens[1].startswith(("bench/", "scripts/")):
                found.append((block.where, tokens[1], [t.partition("=")[0] for t in tokens[2:] if t.startswith("--")]))
    return found


BENCH_COMMANDS = _bench_commands()


@pytest.mark.parametrize("where, script, options", BENCH_COMMANDS, ids=[f"{w} {s}" for w, s, _ in BENCH_COMMANDS])
def test_bench_command_options_exist(where: str, script: str, options: list[str]):
    source = (ROOT / script).read_text(encoding="utf-8")
    missing = [option for option in options if f'"{option}"' not in source and f"'{option}'" not in source]
    assert not missing, f"{where}: {script} declares no option {missing}"


def _prose_options() -> list[tuple[str, str]]:
    """(where, option) for every `--option ...` code span in the docs' prose."""
    found = []
    for path in DOCS:
        for number, line in _prose(path):
            for span in re.findall(r"`(--[a-z][\w.-]*)[^`]*`", line):
                found.append((f"{_relative(path)}:{number}", span))
    return found


PROSE_OPTIONS = _prose_options()
# options of other programs that the docs quote
OTHER_TOOLS_OPTIONS = {"--quantization": "ctranslate2's converter", "--batch_size": "lm-eval", "--model_args": "lmms-eval",
                       "--no-jinja": "llama.cpp"}
ALL_OPTIONS = {name for parser in (PARSER, *SUBCOMMANDS.values()) for action in parser._actions
               for name in action.option_strings}


@pytest.mark.parametrize("where, option", PROSE_OPTIONS, ids=[f"{w} {o}" for w, o in PROSE_OPTIONS])
def test_option_named_in_prose_exists(where: str, option: str):
    """An option the prose names (`--max-image-pixels`) is an option of some command, a config override
    (`--train.seed`) whose key exists, or an option of a bench/ script."""
    if "." in option:
        problems = _check_overrides(None, [option, "null"])
        assert not problems or "expected" in problems[0], f"{where}: {option}: {problems}"
        return
    if option in OTHER_TOOLS_OPTIONS:
        return
    scripts = "".join(path.read_text(encoding="utf-8") for folder in ("bench", "scripts")
                      for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".sh"))
    declared = f'"{option}"' in scripts or f"{option})" in scripts  # argparse, or a shell `case`
    assert option in ALL_OPTIONS or declared, f"{where}: no command has an option {option}"


def test_the_docs_ask_the_quickstart_model_in_the_layout_it_was_trained_and_scored_in():
    """README's and interop.md's Python examples ask the quickstart model about runs/quickstart/shapes.png;
    they asked "question\\n<image>", a layout the quickstart never trains on (its user turns are the
    question, the image, the question again: `question_first`), so they show what it was scored on: as
    written, or placed by the quickstart model's `media_layout` when the text has no marker."""
    from modrwkv.inference.prompt import build_sample
    from modrwkv.quickstart.data import _chat
    from modrwkv.quickstart.run import QuickstartSettings, build_model

    question = "What colour is the circle?"
    trained = _chat(question, "<image>", "red", QuickstartSettings().question_first)[0].content
    layout = build_model(QuickstartSettings(n_layer=1, n_embd=64, encoder_width=32)).media_layout
    for doc in (ROOT / "README.md", ROOT / "docs" / "interop.md"):
        text = doc.read_text()
        assert f'question = "{question}"' in text, doc
        [asked] = re.findall(r'\((question|f"[^"]*"), images=\["runs/quickstart/shapes\.png"\]', text)
        asked = question if asked == "question" else asked[2:-1].replace("\\n", "\n").replace("{question}", question)
        placed = build_sample(asked, images=["shapes.png"], media_layout=layout).messages[0].content
        assert placed == trained, doc
    # README's OpenAI client example: parts are read in their order, joined by newlines
    [parts] = re.findall(r'"content": \[\n    (question, \{"type": "image_url".*?\}\}, question)\]', (ROOT / "README.md").read_text())
    order = ["image" if part.startswith("{") else "question" for part in re.split(r", (?=question|\{)", parts)]
    assert "\n".join(question if part == "question" else "<image>" for part in order) == trained, order

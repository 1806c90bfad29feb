"""The Hugging Face Hub: model ids as `--model` / `from_pretrained` arguments, model cards, uploads.

`resolve_model_path` turns ``org/name`` or ``org/name@revision`` into the local folder of that
snapshot (downloading it unless offline), before any loader sees the path; local paths pass
through untouched. Offline (``HF_HUB_OFFLINE=1``, or ``offline=True``) only the local cache
(``HF_HUB_CACHE``) is read, and an id that is not there is an error naming it.

`model_card` writes the README.md of a saved ModRWKV folder: architecture, encoders, adapters,
the training config and `modrwkv eval` results. `push_to_hub` saves a model with its card and
uploads the folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .multimodal import ModRWKV

log = logging.getLogger(__name__)

__all__ = ["HubModelNotFoundError", "HubUnreachableError", "is_hub_id", "model_card", "push_to_hub",
           "read_eval_summaries", "resolve_model_path"]

# org/name with the Hub's characters, then an optional @revision (branch, tag or commit).
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
_TRUE = {"1", "true", "yes", "on"}


class HubModelNotFoundError(FileNotFoundError):
    """A hub id that is neither a local path nor available (in the cache, when offline)."""


class HubUnreachableError(ConnectionError):
    """The hub could not be reached to upload (no network, DNS, proxy, timeout)."""


def _transport_errors() -> tuple[type[Exception], ...]:
    """The network errors of the HTTP client huggingface_hub uses. The hub's HTTP status errors are
    OSErrors, but its client's own connection errors (httpx's `TransportError`; huggingface_hub 2.x
    ships it as `httpx2`) are not, and would escape as a traceback."""
    errors: list[type[Exception]] = []
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def is_hub_id(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` reads as ``org/name[@revision]`` and is not an existing local path."""
    text = str(name)
    if Path(text).exists() or any(Path(text + s).exists() for s in (".pth", ".safetensors", ".gguf")):
        return False
    return _HUB_ID.match(text) is not None and not text.startswith(("./", "../"))


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_model_path(
    name: str | os.PathLike[str],
    *,
    revision: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
) -> Path:
    """The local path of ``name``: itself when it exists (a quickstart's or a training run's output
    folder: the model it ends with), else the snapshot folder of the hub repository ``org/name[@revision]`` (``revision``
    overrides the ``@`` part).

    Raises:
        HubModelNotFoundError: the id is not in the cache (offline), or the hub has no such
            repository or revision; the message names the id and what was tried.
        FileNotFoundError: a quickstart's or training run's output folder whose run has not finished.
    """
    if not is_hub_id(name):
        path = Path(name)
        if path.is_dir() and not (path / "config.json").exists():
            from .quickstart.stages import final_model as quickstart_model
            from .run_folder import final_model as run_model

            return quickstart_model(path) or run_model(path) or path
        return path
    match = _HUB_ID.match(str(name))
    assert match is not None
    repo_id, revision = match["repo"], revision or match["revision"]
    offline = _offline() if offline is None else offline
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise HubModelNotFoundError(
            f"{name}: no such local path, and hub ids need huggingface_hub: pip install huggingface_hub"
        ) from None
    label = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = snapshot_download(repo_id, revision=revision, local_files_only=offline, cache_dir=cache_dir,
                                   token=token)
    except LocalEntryNotFoundError:
        where = cache_dir or "the default Hugging Face cache"
        raise HubModelNotFoundError(
            f"{label}: no such local path, and the hub model is not in {where}"
            + (" (offline: HF_HUB_OFFLINE is set, so nothing is downloaded)" if offline else "")
        ) from None
    except RevisionNotFoundError:
        raise HubModelNotFoundError(f"{label}: the hub repository {repo_id} has no revision {revision!r}") from None
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise HubModelNotFoundError(f"{label}: no such local path or hub repository ({type(exc).__name__})") from None
    log.info("%s resolved to %s", label, folder)
    return Path(folder)


# ------------------------------------------------------------------------------------------ cards


def read_eval_summaries(sources: Sequence[str | os.PathLike[str] | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`modrwkv eval` summaries from dicts, summary.json files or eval output folders."""
    summaries = []
    for source in sources:
        if isinstance(source, Mapping):
            summaries.append(dict(source))
            continue
        path = Path(source)
        path = path / "summary.json" if path.is_dir() else path
        try:
            summaries.append(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no eval summary (run `modrwkv eval` with --output there first)") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON eval summary ({exc})") from None
    return summaries


def model_card(
    config: Mapping[str, Any],
    *,
    training_config: Mapping[str, Any] | None = None,
    eval_summaries: Sequence[Mapping[str, Any]] = (),
    repo_id: str | None = None,
) -> str:
    """The README.md of a ModRWKV folder, from its config.json contents."""
    import yaml

    from .evaluation.report import format_metric

    lm = config["lm"]
    encoders: Mapping[str, Any] = config.get("encoders", {})
    adapters: Mapping[str, Any] = config.get("adapters", {})
    tags = ["modrwkv", "rwkv", "rwkv7", *(["multimodal"] if encoders else [])]
    pipeline = {"image": "image-text-to-text", "audio": "audio-text-to-text"}.get(next(iter(encoders), ""),
                                                                               "text-generation")
    front = {"library_name": "modrwkv", "pipeline_tag": pipeline, "tags": tags, "license": "apache-2.0"}

    from .lm import RWKV7Config

    params = RWKV7Config.from_dict(lm).num_parameters()
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {repo_id.split('/')[-1] if repo_id else 'ModRWKV model'}", "",
        "A [ModRWKV](https://github.com/JL-er/ModRWKV) model saved by modrwkv: modality encoders feed small adapters "
        "whose outputs are spliced into the token embeddings of an RWKV-7 language model.", "",
        "## Architecture", "",
        "| part | value |", "|---|---|",
        f"| LM | RWKV-7, {lm['n_layer']} layers, width {lm['n_embd']}, head size {lm['head_size']}, "
        f"vocabulary {lm['vocab_size']} ({params / 1e6:.1f}M parameters) |",
        f"| chat template | {config.get('template')} |",
        f"| media splicing | {config.get('splice')} |",
        f"| media without a marker (`media_layout`) | {config.get('media_layout', 'media_text')} |",
        f"| training context | {config.get('ctx_len')} tokens |", "",
        "## Encoders", "",
    ]
    if encoders:
        lines += ["| modality | encoder | source | adapter |", "|---|---|---|---|"]
        for modality, enc in encoders.items():
            adapter = adapters.get(modality, {})
            compression = adapter.get("compression")
            adapter_text = f"{adapter.get('kind', '?')} {adapter.get('in_dim')} -> {adapter.get('out_dim')}" + (
                f", Conv1D compression {compression}" if compression else "")
            source = enc.get("source") or ("weights in this folder" if enc.get("saved") else "built in")
            lines.append(f"| {modality} | {enc.get('name')} | {source} | {adapter_text} |")
    else:
        lines.append("None: a text-only model.")
    lines += ["", "## Training", ""]
    if training_config:
        lines += ["The resolved `modrwkv train` config:", "", "```yaml",
                  yaml.safe_dump(dict(training_config), sort_keys=False).strip(), "```"]
    else:
        lines.append("No training config was recorded with this folder.")
    lines += ["", "## Evaluation", ""]
    scored = [s for s in eval_summaries if not s.get("server_scored")]
    if scored:
        lines += ["Scored by `modrwkv eval` as each benchmark's official script scores:", "",
                  "| benchmark | split | metric | value | samples |", "|---|---|---|---:|---:|"]
        for s in scored:
            headline = s.get("headline", {})
            limit = f" (first {s['limit']})" if s.get("limit") else ""
            lines.append(f"| {s.get('title', s.get('task'))} | {s.get('split')} | {headline.get('label')} | "
                         f"{format_metric(headline.get('value'))} | {s.get('samples')}{limit} |")
    else:
        lines.append("No `modrwkv eval` results were recorded with this folder.")
    ident = repo_id or "path/to/this/folder"
    lines += [
        "", "## Use", "", "```python", "from modrwkv.inference import ModRWKVPipeline", "",
        f'pipe = ModRWKVPipeline.from_pretrained("{ident}")',
        'print(pipe.chat("Describe the picture.\\n<image>", images=["photo.jpg"], temperature=0))'
        if "image" in encoders else 'print(pipe.chat("Hello!", temperature=0))',
        "```", "", f"or `modrwkv chat --model {ident}`; `modrwkv serve --model {ident}` serves it over an "
        "OpenAI-compatible API.", "",
    ]
    return "\n".join(lines)


def push_to_hub(
    model: ModRWKV,
    repo_id: str,
    *,
    training_config: Mapping[str, Any] | None = None,
    eval_results: Sequence[str | os.PathLike[str] | Mapping[str, Any]] = (),
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload ModRWKV model",
    token: str | None = None,
    api: Any = None,
) -> str:
    """Saves ``model`` (with its card) and uploads the folder to the hub repository ``repo_id``,
    creating it if needed. ``api`` is an ``huggingface_hub.HfApi`` (default: a new one with
    ``token``). Returns the commit URL (or whatever ``api.upload_folder`` returns)."""
    if _HUB_ID.match(repo_id) is None or "@" in repo_id:
        raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="modrwkv-push-") as tmp:
        model.save_pretrained(tmp, training_config=training_config, eval_results=eval_results, repo_id=repo_id)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            result = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message,
                                       revision=revision, repo_type="model")
        except _transport_errors() as exc:
            raise HubUnreachableError(
                f"could not reach the Hugging Face Hub to push to {repo_id} ({type(exc).__name__}: {exc}); "
                "check the network (or HF_ENDPOINT / the proxy settings) and run the same command again"
            ) from None
    log.info("pushed the model to %s", repo_id)
    return str(result)

"""A folder of class folders as question-answer records: the layout torchvision's `ImageFolder`, Keras'
`image_dataset_from_directory` and Hugging Face's `imagefolder` / `audiofolder` read, and the one Speech
Commands is distributed in (with a metadata file, `metadata.jsonl` / `.csv` / `.parquet`, in it or a subfolder, a
folder is Hugging Face's metadata layout instead: `hffolders`; with a text file of the same name beside its first
media files, their captions or transcripts: `sidecars`):

    data/digits/train/0/img_0001.png   data/digits/train/0/img_0002.png   data/digits/train/1/...

Each media file (image, audio or video by its extension, as the WebDataset reader tells them:
`MEDIA_EXTENSIONS`) is one record: a qa record with that file, the reader's `prompt` as its question
(default `CLASS_PROMPTS`, by the kind of media) and the name of its class folder as its answer, scored
by exact match. The records take the classes in turn, each in name order (as Python sorts the names):
every class's first file, then every class's second, ..., so runs are reproducible and the first N
records (eval --limit, train.val_max_samples, init's scan) hold every class; a record's source is the
file's path, its id "class/file name".

Hidden files and folders (a name starting with ".": .DS_Store, .ipynb_checkpoints) and what file managers
and archivers leave (Thumbs.db, desktop.ini, __MACOSX) are not read. What
else is not a sample is said: a file beside the class folders (README.txt) is left aside with a warning,
a class folder with no media file is warned about, a file in a class folder that is no media file by its
extension is a bad record (skipped and counted as a bad JSONL line is), and so is a symbolic link to a
file that is not there; a linked file or class folder is read as the file or folder it links to. A folder
whose subfolders are splits (train/, test/, as Hugging Face's imagefolder lays them out), a folder inside
a class folder, media of more than one kind, or no class folder at all stop the reading with one line
naming the folder and what to give instead, as does a data file (.jsonl, .csv, a .tar shard, ...) beside
the subfolders or in one (`data/` holding train.jsonl and images/, or annotations/train.json and images/:
the records are the data, not the folder; of several splits' files, Common Voice's train.tsv, dev.tsv and test.tsv
beside clips/, the one to train on and the one to evaluate on are named). A folder of a single class folder with
media is read, with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...textfiles import data_suffix
from .base import DataError, _warn_once as warn_once, is_tar, media_kind
from .webdataset import CLASS_PROMPTS, READ_EXTENSIONS, ClassRecord

# Subfolder names that make a folder a dataset's splits (each a folder of class folders), not its classes.
# Files of records, which a folder given for its class folders must not hold (its subfolders are then their media).
DATA_EXTENSIONS = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".npz")
SPLIT_NAMES = ("train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval")


# What file managers and archivers leave beside files (Windows' thumbnail cache and folder settings, the
# folder macOS's zip puts its resource forks in): not read, as hidden names are not.
OS_LEFTOVERS = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


def is_visible(name: str) -> bool:
    """Whether a file or folder of this name is read: not a hidden one (.DS_Store) nor one of `OS_LEFTOVERS`."""
    return not name.startswith(".") and name.lower() not in OS_LEFTOVERS


def visible_tree(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """Each folder of `folder`'s tree with the names of its visible files (`is_visible`), in name order: a folder
    before its subfolders, which come in name order (hidden ones and OS leftovers are not entered). A linked subfolder
    is read as the folder it links to (as a class folder is), each folder once: a link back up the tree is not
    followed round."""
    seen: set[str] = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if is_visible(name))
        yield Path(root), sorted(name for name in files if is_visible(name))


def _visible(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of `folder` that are read (`is_visible`), sorted by name."""
    with os.scandir(folder) as entries:
        return sorted((entry for entry in entries if is_visible(entry.name)), key=lambda entry: entry.name)


def _is_data_file(name: str) -> bool:
    """A file of records by its name (`DATA_EXTENSIONS`, compressed or not; a WebDataset shard): what a class folder
    is not made of."""
    return data_suffix(name) in DATA_EXTENSIONS or is_tar(Path(name))


def has_class_folders(path: Path) -> bool:
    """Whether the folder `path` has a visible subfolder: what makes a folder without .tar or .parquet
    shards stand for a folder of class folders (`expand_paths`)."""
    try:
        return any(entry.is_dir() for entry in _visible(path))
    except OSError:
        return False


def split_kind(name: str) -> str | None:
    """"train" for a split to train on, "eval" for one to evaluate on, by its name: one of `SPLIT_NAMES`, or
    one followed by a separator (ultrachat's train_sft, test_gen); None for another name (SVHN's extra, a
    language's en)."""
    lower = name.lower()
    for split in SPLIT_NAMES:
        if lower == split or (lower.startswith(split) and not lower[len(split)].isalnum()):
            return "train" if split in ("train", "training") else "eval"
    return None


def split_refusal(path: Path, splits: list[str], each: str,
                  shown: Callable[[str], str] = "{}/".format) -> DataError:
    """The error of a folder `path` whose `splits` are a data set's splits, each `each`: one line naming the
    split to train on and the one to evaluate on (`split_kind`; a clause left out where no split is one), each as
    `shown` gives it in the folder (a subfolder "train/"; Parquet shards "train-*.parquet")."""
    given = ", ".join(shown(split) for split in splits)
    train = next((split for split in splits if split_kind(split) == "train"), None)
    test = next((split for split in splits if split_kind(split) == "eval"), None)
    choices = [f"{path / shown(train)} to train on (modrwkv init --data, data.train)"] if train else []
    choices += [f"evaluate on {path / shown(test)} (modrwkv eval --task custom --data)"] if test else []
    return DataError(str(path), "unreadable_file", f"holds the splits {given}, each {each}: give one split"
                     + "".join(f", {choice}" if i == 0 else f"; {choice}" for i, choice in enumerate(choices)))


def class_folder_records(path: Path, prompt: str | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per media file of the class folders in `path` (the module docstring), `load()` giving
    its record, asked `prompt` (None: `CLASS_PROMPTS`). A folder that is no folder of class folders raises
    `DataError` (unreadable_file) naming it."""
    name = str(path)
    try:
        entries = _visible(path)
        classes = [(entry.name, _visible(Path(entry.path))) for entry in entries if entry.is_dir()]
    except OSError as err:
        raise DataError(name, "unreadable_file", f"cannot list the folder: {err.strerror or err}") from None
    splits = [cls for cls, items in classes
              if cls.lower() in SPLIT_NAMES and any(item.is_dir() for item in items)]
    if splits:
        raise split_refusal(path, splits, "a folder of class folders")
    if not classes:
        raise DataError(name, "unreadable_file", "no class folder: a folder of class folders holds a subfolder per "
                        "label, each with its image, audio or video files (train/cat/0001.jpg); see "
                        "docs/custom-data.md")
    stray = [entry.name for entry in entries if not entry.is_dir()]
    records = [file for file in stray if _is_data_file(file)]
    gluonts = [path / cls / item.name for cls, items in classes if cls in ("train", "test") for item in items
               if item.is_file() and item.name.startswith("data.json")]
    if "metadata.json" in stray and gluonts:  # (GluonTS' saved data sets: `TrainDatasets.save`)
        test = next((file for file in gluonts if file.parent.name == "test"), gluonts[0])
        raise DataError(name, "unreadable_file", f"a GluonTS data set (metadata.json beside "
                        f"{', '.join(str(file.relative_to(path)) for file in gluonts)}): give its data file, {test} "
                        "(test's series are whole: init and eval hold out each one's last prediction_length, as "
                        "GluonTS evaluates; docs/forecasting.md)")
    splits = [file for file in records if split_kind(file) is not None]
    if len(splits) > 1:  # (Common Voice's language folder: train.tsv, dev.tsv and test.tsv beside clips/)
        raise split_refusal(path, splits, "a data file whose records name their media", shown=str)
    if records:  # (a metadata.jsonl / .csv / .parquet makes the folder Hugging Face's metadata layout: `hffolders`)
        raise DataError(name, "unreadable_file", f"holds {', '.join(records)} beside its subfolders: give the data "
                        "file itself (its records name their media); a folder of class folders, whose subfolders' "
                        "names are the answers, holds no data file")
    if stray:
        shown = ", ".join(stray[:3]) + (f" and {len(stray) - 3} more" if len(stray) > 3 else "")
        warn_once(f"{path}: {shown} {'is' if len(stray) == 1 else 'are'} beside the class folders, not in one: "
                  "left aside (a sample's label is the name of the class folder it is in)")
    kinds: dict[str, str] = {}  # each kind of media -> its first file
    labelled = []  # the class folders with a media file
    for cls, items in classes:
        nested = next((item for item in items if item.is_dir()), None)
        if nested is not None:
            raise DataError(str(path / cls / nested.name), "unreadable_file", f"a folder inside the class folder "
                            f"{cls!r}: a class folder holds its media files directly, and deeper folders are not "
                            f"read; move its files into {path / cls}, or give {path / cls} if its subfolders are "
                            "the classes")
        data = next((item for item in items if _is_data_file(item.name)), None)
        if data is not None:  # (data/annotations/train.json beside data/images/, shards/part1/*.tar)
            raise DataError(str(path / cls / data.name), "unreadable_file", f"a data file in {path / cls}: {path} "
                            "was read as a folder of class folders (a subfolder per label, holding media files); "
                            "give the data files themselves (a wildcard such as "
                            f"{path / '*' / ('*' + ''.join(Path(data.name).suffixes))})")
        media = [(kind, item.path) for item in items if (kind := media_kind(Path(item.name))) is not None]
        if not media:
            warn_once(f"{path / cls}: an empty class folder (no image, audio or video file): no sample answers {cls!r}")
        if media:
            labelled.append(cls)
        for kind, file in media:
            kinds.setdefault(kind, file)
    if len(kinds) > 1:
        mixed = " and ".join(f"{kind} ({file})" for kind, file in kinds.items())
        raise DataError(name, "unreadable_file", f"the class folders mix {mixed} files: a folder of class folders "
                        "holds one kind of media, asked one question; put each kind in a folder of its own")
    if len(labelled) == 1:
        warn_once(f"{path}: one class folder with media ({labelled[0]}): every sample's answer is {labelled[0]!r}; a "
                  "classifier learns from a class folder per label")
    # the classes in turn (each one's first file, then each one's second, ...): the first N records
    # (`eval --limit`, train.val_max_samples, init's scan) hold every class, not the first ones by name
    for rank in range(max((len(items) for _, items in classes), default=0)):
        for cls, items in classes:
            if rank < len(items):
                yield str(path / cls / items[rank].name), _loader(path, cls, items[rank], prompt)


def _loader(path: Path, cls: str, item: os.DirEntry[str], prompt: str | None) -> Callable[[], Any]:
    source = str(path / cls / item.name)

    def load() -> dict[str, Any]:
        kind = media_kind(Path(item.name))
        if kind is None:
            raise DataError(source, "unreadable_media", f"not an image, audio or video file by its extension "
                            f"({Path(item.name).suffix or 'none'}; read: {READ_EXTENSIONS})")
        if not item.is_file():  # (a symbolic link is followed: one to nothing is neither file nor folder)
            target = os.readlink(item.path) if item.is_symlink() else "?"
            raise DataError(source, "missing_media", f"a symbolic link to {target}, which does not exist")
        question = prompt if prompt is not None else CLASS_PROMPTS[kind]
        # an absolute path: the qa converter resolves a relative one against the data file's folder
        # scored by exact match whatever the media (an audio record's default is WER, for transcripts): a label
        return ClassRecord({kind: os.path.abspath(item.path), "question": question, "answer": cls,
                            "id": f"{cls}/{item.name}", "metric": "exact"})

    return load

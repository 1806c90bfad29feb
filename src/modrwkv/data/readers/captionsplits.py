"""The two caption-file layouts captioning research uses most, as captioned samples with their splits:

Karpathy's split files (cs.stanford.edu/people/karpathy/deepimagesent, caption_datasets.zip: `dataset_coco.json`,
`dataset_flickr8k.json`, `dataset_flickr30k.json`, the splits BLIP, ClipCap, OSCAR and NeuralTalk train and test on):

    {"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "imgid": 0, "split": "test",
                 "sentids": [770337, ...], "cocoid": 391895,
                 "sentences": [{"tokens": ["a", "man", ...], "raw": "A man with a red helmet on a small moped on a
                                dirt road. ", "imgid": 0, "sentid": 770337}, ...]}, ...],
     "dataset": "coco"}

(`filepath` and `cocoid` are COCO's only; `split` is "train", "restval", "val" or "test"), and Flickr's own token
files, a line per caption, five per image: Flickr8k's `Flickr8k.token.txt` (and `Flickr8k.lemma.token.txt`) and
Flickr30k's `results_20130124.token`:

    1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress is climbing up a set of stairs in an entry way .

told by content: a .txt or .token file whose first line is IMAGE#N, a tab and the caption (`is_caption_tokens`).

Each image is one sample as a COCO captions file's are (`coco`): the plain record {"image": its file, "caption":
[its captions, white space around them removed, in the file's order], "id": ...}, asked the reader's `prompt`,
trained on each caption as a sample of its own (`qa.each_caption`) and scored by CIDEr-D against all of them. Its
id is COCO's image id (`cocoid`) where the file gives one, so that results key as COCO's results files do; else its
file name (`1000268201_693b08cb0e.jpg`), the same in a Karpathy file, a token file and Kaggle's captions.txt
(`imgid` numbers the images of one Karpathy file only).

A Karpathy file names each image's split; Flickr8k's official splits are the lists beside its token file,
`Flickr_8k.trainImages.txt`, `Flickr_8k.devImages.txt` and `Flickr_8k.testImages.txt` (a file name per line). The
reader's `split` option (a name or a list of names: `data.options.split`, `data.val_options.split`; `modrwkv eval
--task custom --split`) reads the images of those splits. A file of several splits (or a token file with split lists
beside it) read without `split` is refused, naming its splits and their images: Karpathy's convention trains on
train + restval and evaluates on test, and a file read whole would train on the test images. A split the file has
not, a `split` for a token file without lists beside it, and a `split` for any other file are refused too.

An image's file is looked for in the media folder given (`data.media_folder`, `--media-folder`) under its
`filepath` (COCO's `val2014/`, `train2014/`) and directly; without one, in the file's folder and the folder above
it, under the `filepath` and directly (a COCO image), or directly and in the folders the official downloads unpack
into (a Flickr image): `Flicker8k_Dataset/` (sic, Flickr8k_Dataset.zip), `flickr30k-images/`, and Kaggle's
`Images/`. An image in none of them, one without captions, a caption that is not text (an empty one) and a token
line that is not IMAGE#N<TAB>caption are bad records (skipped and counted, or raised), named by the file and the
image ("dataset_coco.json:image 391895") or line.
"""

from __future__ import annotations

import collections
import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...textfiles import TextFileError, data_suffix, decode_text, open_data
from .base import DataError, data_file_text, media_kind
from .hffolders import located

# The reader option that selects splits, as messages name it (training's and eval's).
SPLIT_OPTION = "split (data.options.split; modrwkv eval --task custom --split)"
# Where the official Flickr downloads unpack their images (Flickr8k_Dataset.zip's folder is misspelt so), and
# Kaggle's copies: looked for beside and above a file that names a Flickr image.
FLICKR_FOLDERS = ("Flicker8k_Dataset", "flickr30k-images", "Images")
# The token files' extensions: Flickr8k.token.txt, results_20130124.token.
TOKEN_EXTENSIONS = (".txt", ".token")
# Flickr8k's split lists beside its token file: Flickr_8k.trainImages.txt -> "train".
_SPLIT_LIST = re.compile(r"Flickr_8k\.(?P<split>\w+)Images\.txt")
# the order messages list splits in: those to train on first (Karpathy's dataset_coco.json starts with test images)
_SPLIT_ORDER = {split: index for index, split in enumerate(("train", "restval", "val", "dev", "test"))}
_SNIFFED_BYTES = 1 << 12


def split_names(split: Any, setting: str = "split") -> tuple[str, ...] | None:
    """The reader's `split` option as a tuple of names (None: none given); ValueError for what is not a name or
    a list of names."""
    if split is None:
        return None
    names = [split] if isinstance(split, str) else split
    if (not isinstance(names, (list, tuple)) or not names
            or not all(isinstance(name, str) and name.strip() for name in names)):
        raise ValueError(f"{setting} must be a split's name or a list of names (e.g. [train, restval]), got {split!r}")
    return tuple(dict.fromkeys(name.strip() for name in names))


def split_refused(path: Path) -> DataError:
    """The error of a `split` given for a file that has no splits to select."""
    return DataError(str(path), "unreadable_file", f"{SPLIT_OPTION} selects the images of splits of a Karpathy split "
                     "file (dataset_coco.json, ...) or of the Flickr_8k.*Images.txt lists beside Flickr8k.token.txt; "
                     "this file is neither and is read whole: leave split out for it")


def is_karpathy_layout(value: Any) -> bool:
    """Whether a JSON document is Karpathy's split layout: an `images` list of objects with a `filename` and
    `sentences`."""
    images = value.get("images") if isinstance(value, dict) else None
    return (isinstance(images, list) and bool(images) and isinstance(images[0], dict)
            and "filename" in images[0] and "sentences" in images[0])


def karpathy_records(value: dict[str, Any], path: Path, media_folder: Path | None,
                     split: Sequence[str] | None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source "path:image ID", load) per image of `split` in a Karpathy split document (`is_karpathy_layout`),
    each loading the plain record {"image", "caption", "id"} (the module docstring). A document of several splits
    without `split`, and a split it has not, raise `DataError` (unreadable_file) naming its splits."""
    images = value["images"]
    counts = collections.Counter(_split_of(image) for image in images)
    counts.pop(None, None)
    selected = _selected(path, split, counts)
    # once per folder named, not per image (dataset_coco.json's 123,287 images name two)
    folders_of = functools.cache(functools.partial(_folders, path, media_folder))
    for index, image in enumerate(images):
        identifier = _karpathy_id(image)
        source = f"{path}:image {identifier}" if identifier is not None else f"{path}:images[{index}]"
        if selected is not None and _split_of(image) not in selected:
            if _split_of(image) is None:  # (no split selects it: said, not passed over)
                yield source, functools.partial(_unsplit, image, source)
            continue
        filepath = image.get("filepath") if isinstance(image, dict) else None
        folders = folders_of(filepath if isinstance(filepath, str) and filepath else None)
        yield source, functools.partial(_karpathy_record, image, folders, source)


def _split_of(image: Any) -> str | None:
    split = image.get("split") if isinstance(image, dict) else None
    return split if isinstance(split, str) else None


def _karpathy_id(image: Any) -> str | None:
    """An image's id: its `cocoid` (COCO's image id), else its file name; None for an entry with neither."""
    if not isinstance(image, dict):
        return None
    cocoid = image.get("cocoid")
    if isinstance(cocoid, (int, str)) and not isinstance(cocoid, bool):
        return str(cocoid)
    name = image.get("filename")
    return name if isinstance(name, str) and name else None


def _karpathy_record(image: Any, folders: list[str], source: str) -> dict[str, Any]:
    if not isinstance(image, dict) or not isinstance(image.get("filename"), str) or not image["filename"]:
        raise DataError(source, "missing_field", f"an entry of 'images' needs a 'filename' (text) and 'sentences', got "
                        f"{_shown(image)}")
    name, identifier = image["filename"], _karpathy_id(image)
    if image.get("filepath") is not None and not isinstance(image["filepath"], str):
        raise DataError(source, "wrong_type", f"image {identifier}'s 'filepath' must be a folder's name (val2014), "
                        f"got {image['filepath']!r}")
    sentences = image.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        raise DataError(source, "empty_answer", f"image {identifier} ({name}) has no caption: its 'sentences' is "
                        f"{_shown(sentences)}")
    captions = []
    for index, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            sentid = sentence.get("sentid") if isinstance(sentence, dict) else None
            which = f"sentence {sentid}" if sentid is not None else f"sentences[{index}]"
            raise DataError(source, "empty_answer", f"{which} of image {identifier} has the 'raw' text "
                            f"{_shown(raw)}, not a caption")
        captions.append(raw.strip())
    return {"image": located(folders, name, f"image {identifier}'s file {name}", source), "caption": captions,
            "id": identifier}


def _unsplit(image: Any, source: str) -> Any:
    fields = f"its fields: {', '.join(map(str, image))}" if isinstance(image, dict) else f"a {type(image).__name__}"
    raise DataError(source, "missing_field", f"the entry has no 'split' ({fields}), so no split selects it")


def is_caption_tokens(path: Path) -> bool:
    """Whether `path` is a Flickr token file: a .txt or .token file whose first line is IMAGE#N, a tab and a
    caption, IMAGE an image's file name (`media_kind`); read from its head only."""
    if data_suffix(path) not in TOKEN_EXTENSIONS or not path.is_file():
        return False
    try:
        with open_data(path) as handle:
            text = decode_text(handle.read(_SNIFFED_BYTES), path, partial=True)
    except (OSError, TextFileError):
        return False
    first = next((line for line in text.splitlines() if line.strip()), "")
    parsed = _token_line(first)
    return parsed is not None and media_kind(Path(parsed[0])) == "image"


def _token_line(line: str) -> tuple[str, str] | None:
    """(image, caption) of a token line IMAGE#N<TAB>caption; None for another line."""
    head, tab, caption = line.partition("\t")
    name, hash_mark, number = head.rpartition("#")
    if not (tab and hash_mark and number.strip().isdigit() and name.strip()):
        return None
    return name.strip(), caption


def token_records(path: Path, media_folder: Path | None,
                  split: Sequence[str] | None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per image of a Flickr token file (`is_caption_tokens`; "path:image NAME"), in the order of
    their first lines, each loading the plain record of its captions (the module docstring), those of `split` (the
    Flickr_8k.*Images.txt lists beside the file) where given; then a bad record per line that is no token line
    ("path:line"). Split lists beside the file without `split`, and a `split` without its list, raise `DataError`
    (unreadable_file)."""
    text = data_file_text(path)
    captions: dict[str, list[tuple[int, str]]] = {}  # image -> (line, caption), in the file's order
    malformed: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = _token_line(line)
        if parsed is None:
            malformed.append((number, line))
        else:
            captions.setdefault(parsed[0], []).append((number, parsed[1]))
    lists = _split_lists(path)
    counts = collections.Counter({name: len(images) for name, (_, images) in lists.items()})
    beside = f", listed beside it in {', '.join(file.name for file, _ in lists.values())}"
    listed: dict[str, Path] = {}  # an image of the splits read -> its list
    if split is None:
        if lists:
            _selected(path, None, counts, beside)
        names = list(captions)
    else:
        if not lists:
            raise DataError(str(path), "unreadable_file", f"{SPLIT_OPTION} selects the images listed in "
                            "Flickr_8k.<split>Images.txt beside the token file (Flickr_8k.trainImages.txt, "
                            "Flickr_8k.devImages.txt, Flickr_8k.testImages.txt, as Flickr8k_text.zip holds them), and "
                            "there is none beside it; Flickr30k's splits are Karpathy's: give dataset_flickr30k.json "
                            "with split, or leave split out to read the file whole")
        _selected(path, split, counts, beside)
        listed = {image: lists[name][0] for name in split for image in lists[name][1]}
        names = [image for image in captions if image in listed]
        names += [image for image in listed if image not in captions]
    folders = _folders(path, media_folder, None)
    for name in names:
        source = f"{path}:image {name}"
        if name in captions:
            yield source, functools.partial(_token_record, name, captions[name], folders, source)
        else:
            yield source, functools.partial(_uncaptioned, name, listed[name], path, source)
    for number, line in malformed:
        yield f"{path}:{number}", functools.partial(_malformed, line, f"{path}:{number}")


def _split_lists(path: Path) -> dict[str, tuple[Path, list[str]]]:
    """Flickr8k's split lists beside a token file: split name -> (the list, its image names in order)."""
    try:
        files = sorted((entry for entry in path.parent.iterdir() if _SPLIT_LIST.fullmatch(entry.name)),
                       key=lambda file: (_SPLIT_ORDER.get(_SPLIT_LIST.fullmatch(file.name)["split"], len(_SPLIT_ORDER)),
                                         file.name))
    except OSError:
        return {}
    lists = {}
    for file in files:
        text = data_file_text(file)
        names = [line.strip() for line in text.splitlines() if line.strip()]
        lists[_SPLIT_LIST.fullmatch(file.name)["split"]] = (file, list(dict.fromkeys(names)))
    return lists


def _token_record(name: str, captions: list[tuple[int, str]], folders: list[str], source: str) -> dict[str, Any]:
    texts = []
    for number, caption in captions:
        if not caption.strip():
            raise DataError(source, "empty_answer", f"line {number}: the caption of {name} is empty")
        texts.append(caption.strip())
    lines = ", ".join(str(number) for number, _ in captions)
    where = f"{name} (the image of line{'s' if len(captions) > 1 else ''} {lines})"
    return {"image": located(folders, name, where, source), "caption": texts, "id": name}


def _uncaptioned(name: str, listed_in: Path, path: Path, source: str) -> Any:
    raise DataError(source, "empty_answer", f"{name}, listed in {listed_in.name}, has no caption in {path.name}")


def _malformed(line: str, source: str) -> Any:
    shown = line if len(line) <= 80 else f"{line[:77]}..."
    raise DataError(source, "wrong_type", f"not a caption line: expected IMAGE#N, a tab and the caption "
                    f"(1000268201_693b08cb0e.jpg#0<TAB>A child in ...), got {shown!r}")


def _selected(path: Path, split: Sequence[str] | None, counts: collections.Counter[str],
              beside: str = "") -> set[str] | None:
    """The splits `split` selects of a file whose splits hold `counts` images (None: every image, a file of one
    split or none read without `split`); `DataError` (unreadable_file) for several splits without `split`, naming
    them, and for a split the file has not."""
    ordered = sorted(counts.items(), key=lambda item: _SPLIT_ORDER.get(item[0], len(_SPLIT_ORDER)))
    shown = ", ".join(f"{name}: {count} image{'s' if count != 1 else ''}" for name, count in ordered)
    if split is None:
        if len(counts) < 2:
            return None
        train = [name for name in ("train", "restval") if name in counts]
        test = next((name for name in ("test", "val", "dev") if name in counts), None)
        advice = [f"[{', '.join(train)}] to train on (modrwkv init --split {','.join(train)})"] if train else []
        advice += [f"{test} to evaluate on (modrwkv eval --task custom --split {test})"] if test else []
        raise DataError(str(path), "unreadable_file", f"holds {len(counts)} splits{beside} ({shown}): give the "
                        f"split to read as {SPLIT_OPTION}{': ' if advice else ''}{'; '.join(advice)}; read whole, "
                        "its evaluation images would be trained on")
    unknown = [name for name in split if name not in counts]
    if unknown:
        raise DataError(str(path), "unreadable_file", f"has no split {unknown[0]!r}{beside} (its splits: "
                        f"{shown or 'none'})")
    return set(split)


def _folders(path: Path, media_folder: Path | None, filepath: str | None) -> list[str]:
    """Where an image is looked for, absolute (the module docstring): each folder under the image's `filepath`
    (COCO's val2014) first; without a `filepath` (a Flickr image), also the official downloads' folders."""
    if media_folder is not None:
        bases = [media_folder]
    else:
        here = path.absolute().parent
        bases = [here, here.parent]
        if filepath is None:
            bases = [folder for base in bases for folder in (base, *(base / name for name in FLICKR_FOLDERS))]
    folders = [folder for base in bases for folder in ((base / filepath, base) if filepath else (base,))]
    return list(dict.fromkeys(os.path.abspath(folder) for folder in folders))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."

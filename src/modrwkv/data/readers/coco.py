"""COCO's caption annotation files as captioned samples: `annotations/captions_train2017.json` and
`captions_val2017.json` as cocodataset.org publishes them (2014's too), and other sets' files in the same layout
(nocaps', Flickr30k's COCO-style files):

    {"info": {...}, "licenses": [...],
     "images": [{"id": 139, "file_name": "000000000139.jpg", "height": 426, "width": 640, ...}, ...],
     "annotations": [{"image_id": 139, "id": 372891, "caption": "A woman stands in the dining area at the table.\\n"},
                     ...]}

Each image is one sample holding all its captions, in the order of `images`; its captions in the order of
`annotations` (as pycocotools' `COCO.imgToAnns` groups them), without the white space around them (COCO's carry
trailing spaces and newlines). A sample is the record a metadata row with a list of captions makes
(`hubrows.plain_records`, `webdataset.media_record`): asked the reader's `prompt` (default "Write a short caption
for the image."), trained on each caption as a sample of its own (`qa.each_caption`) and scored by CIDEr-D
against all of them, its id the image's `id` (as COCO's results files key captions).

An image's `file_name` is relative to the media folder given (`data.media_folder`, `--media-folder`); without
one, to the first of these that holds it: the file's folder, the folder named after the file (`val2017/` for
`captions_val2017.json`) in it and beside it (`annotations/../val2017/`, as the download unpacks), and the folder
above the file's. An image whose file is in none of them, one without captions, and an annotation whose `image_id`
no image has, or whose caption is not text, are bad records (skipped and counted, or raised), named by the file and
the image's or annotation's id, with the paths tried. A file of `images` without `annotations` (COCO's
`image_info_test2017.json`) or whose annotations hold no `caption` (`instances_*.json`) is refused whole.

Karpathy's split files (dataset_coco.json) and Flickr's token files, whose images are read into the same records
with their splits, are `captionsplits`'.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .base import DataError, first_file

CAPTIONS_PREFIX = "captions_"  # captions_val2017.json: its images are in val2017/


def is_coco_layout(value: Any) -> bool:
    """Whether a JSON document is COCO's annotation layout: an `images` list of objects with a `file_name`."""
    images = value.get("images") if isinstance(value, dict) else None
    return (isinstance(images, list) and bool(images) and isinstance(images[0], dict) and "file_name" in images[0]
            and "id" in images[0])


def image_folders(path: Path) -> list[Path]:
    """Where a COCO file's images are looked for without a media folder, in order (the module docstring)."""
    split = path.stem.removeprefix(CAPTIONS_PREFIX)
    here = path.parent
    return list(dict.fromkeys([here, here / split, here.parent / split, here.parent]))


def coco_records(value: dict[str, Any], path: Path,
                 media_folder: Path | None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source "path:image ID", load) per image of a COCO captions document (`is_coco_layout`), each loading the
    plain record {"image": its file, "caption": [its captions], "id": its id}; then one bad record per annotation
    whose image is not listed ("path:annotation ID")."""
    annotations = value.get("annotations")
    if not isinstance(annotations, list):
        raise DataError(str(path), "unreadable_file", "COCO 'images' without 'annotations' (an image list such as "
                        "image_info_test2017.json): no captions to train on or score; give a captions file "
                        "(annotations/captions_*.json)")
    if annotations and not (isinstance(annotations[0], dict) and "caption" in annotations[0]):
        fields = sorted(annotations[0]) if isinstance(annotations[0], dict) else type(annotations[0]).__name__
        raise DataError(str(path), "unreadable_file", f"COCO annotations without a 'caption' (the first's fields: "
                        f"{fields}): only COCO's captions files (annotations/captions_*.json) are read")
    folders = [media_folder] if media_folder is not None else image_folders(path)
    captions: dict[Any, list[tuple[Any, Any]]] = {}  # image id -> (annotation id, caption), in the file's order
    orphans: list[tuple[int, dict[str, Any]]] = []
    listed = {_image_id(image) for image in value["images"]} - {None}
    for index, annotation in enumerate(annotations):
        if isinstance(annotation, dict) and _key(annotation.get("image_id")) in listed:
            captions.setdefault(annotation["image_id"], []).append((annotation.get("id"), annotation.get("caption")))
        else:
            orphans.append((index, annotation))
    seen: dict[Any, int] = {}
    for index, image in enumerate(value["images"]):
        identifier = _image_id(image)
        source = f"{path}:image {identifier}" if identifier is not None else f"{path}:images[{index}]"
        first = seen.setdefault(identifier, index) if identifier is not None else index
        yield source, functools.partial(_image_record, image, first != index, captions.get(identifier, []), folders,
                                        source)
    for index, annotation in orphans:
        identifier = annotation.get("id") if isinstance(annotation, dict) else None
        source = f"{path}:annotation {identifier}" if identifier is not None else f"{path}:annotations[{index}]"
        yield source, functools.partial(_orphan, annotation, source)


def _key(value: Any) -> int | str | None:
    """An id as COCO writes them (a number; text in other sets' files), else None."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _image_id(image: Any) -> int | str | None:
    return _key(image.get("id")) if isinstance(image, dict) else None


def _image_record(image: Any, repeated: bool, captions: list[tuple[Any, Any]], folders: list[Path],
                  source: str) -> dict[str, Any]:
    if _image_id(image) is None or not isinstance(image.get("file_name"), str):
        raise DataError(source, "missing_field", f"an entry of 'images' needs an 'id' (a number) and a 'file_name' "
                        f"(text), got "
                        f"{image!r}")
    identifier, name = image["id"], image["file_name"]
    if repeated:
        raise DataError(source, "wrong_type", f"image id {identifier} is listed twice in 'images'; its captions are "
                        "read with its first entry")
    if not captions:
        raise DataError(source, "empty_answer", f"image {identifier} ({name}) has no caption: no annotation names "
                        "its id")
    texts = []
    for annotation, caption in captions:
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(source, "empty_answer", f"annotation {annotation}'s caption of image {identifier} is "
                            f"{caption!r}, not a caption")
        texts.append(caption.strip())
    found, tried = first_file(folders, name)
    if found is None:
        numbers = ", ".join(str(annotation) for annotation, _ in captions)
        raise DataError(source, "missing_media", f"image {identifier}'s file {name} (the image of annotation"
                        f"{'s' if len(captions) > 1 else ''} {numbers}) is not found: tried "
                        f"{', '.join(tried)}; give the folder of the images as the media folder "
                        "(data.media_folder, --media-folder)")
    return {"image": os.path.abspath(found), "caption": texts, "id": str(identifier)}


def _orphan(annotation: Any, source: str) -> Any:
    if not isinstance(annotation, dict) or "image_id" not in annotation:
        raise DataError(source, "missing_field", f"an annotation needs an 'image_id' and a 'caption', got "
                        f"{annotation!r}")
    raise DataError(source, "missing_media", f"annotation {annotation.get('id')}'s image_id {annotation['image_id']} "
                    f"is no image's id in 'images' (its caption: {annotation.get('caption')!r})")

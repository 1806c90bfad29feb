"""Video as images: each `<video>` of a sample becomes its sampled frames, in time order, as
consecutive `<image>` markers, and the frames join the sample's images at that place.

There is no video encoder and no video placeholder: every frame then goes through the one image
path (the image encoder's preprocessing, its adapter, its placeholder id, the template's image
block text), in training, inference and serving alike. A recurrent LM reads the frames in order,
so the order itself tells it what came first. With `VideoSampling.timestamps`, each frame is
preceded by its time in the clip as text, "1.5s:" (frames given as images, which have no clock,
get "frame 2:"), so that a model can tell a fast clip from a slow one; that needs media in place
(`splice: placeholder`), since the other splice modes move media away from their text.
"""

from __future__ import annotations

import dataclasses

from ..data.sample import MARKERS, Sample, split_markers
from ..encoders.media import MediaError, VideoFrame, VideoSampling, load_video


def frame_text(frames: list[VideoFrame], sampling: VideoSampling) -> str:
    """The text that stands for a video's frames in the conversation: one `<image>` per frame,
    each after its timestamp when `sampling.timestamps`."""
    if not sampling.timestamps:
        return MARKERS["image"] * len(frames)
    return "".join(
        f"{_clock(frame, k)}:{MARKERS['image']}" for k, frame in enumerate(frames)
    )


def _clock(frame: VideoFrame, index: int) -> str:
    return f"frame {index + 1}" if frame.time is None else f"{frame.time:.1f}s"


def expand_videos(sample: Sample, sampling: VideoSampling) -> Sample:
    """The sample with every video decoded and replaced by its frames (see the module docstring);
    a sample without videos is returned as is. Raises `MediaError` ("video") naming the sample's
    source and the item for a video that does not decode."""
    if not sample.videos:
        return sample
    sample.validate()  # markers and items agree, so the walk below pairs them correctly
    where = f"{sample.source}: " if sample.source else ""
    images, videos = iter(sample.images), iter(sample.videos)
    new_images: list = []

    def replace(marker: str) -> str:
        if marker == MARKERS["image"]:
            new_images.append(next(images))
        if marker != MARKERS["video"]:
            return marker
        try:
            frames = load_video(next(videos), sampling)
        except MediaError as exc:
            raise MediaError("video", f"{where}{exc}") from exc
        new_images.extend(frame.image for frame in frames)
        return frame_text(frames, sampling)

    def expand(text: str) -> str:
        split = split_markers(text)  # escaped markers are text, and stay escaped
        return "".join(piece if k % 2 == 0 else replace(piece) for k, piece in enumerate(split))

    messages = [dataclasses.replace(m, content=expand(m.content)) for m in sample.messages]
    return dataclasses.replace(sample, messages=messages, images=new_images, videos=[])

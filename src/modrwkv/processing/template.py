"""Chat templates: the single place where turns become text, for training, inference and serving.

Each piece of a conversation is tokenised on its own and the token lists are concatenated, so the
tokens of a generation prompt are always a prefix of the tokens the model was trained on (greedy
longest-match tokenisation across a boundary could otherwise merge, e.g., "Assistant:" with the
reply's first space). The `worldrwkv` template instead reproduces the authors' released code token
for token: it tokenises each turn's text as one string (`whole_turns`), as they do.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from ..data.sample import Role


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    name: str
    turn_prefix: dict[str, str]  # role -> text before the content (scaffolding, never supervised)
    content_prefix: str  # text between the role prefix and the content, supervised for the assistant
    turn_end: str  # closes every turn; supervised for the assistant (the model learns to stop)
    stop_strings: tuple[str, ...]
    stop_token_ids: tuple[int, ...]
    forbidden: str  # regex of content text that would forge turn structure ...
    forbidden_replacement: str  # ... and what replaces it
    # Text around each media block (modality -> text), e.g. WorldRWKV's "<|vision_start|>"; such
    # text must be a special token of the model's tokenizer.
    media_open: Mapping[str, str] = dataclasses.field(default_factory=dict)
    media_close: Mapping[str, str] = dataclasses.field(default_factory=dict)
    whole_turns: bool = False  # tokenise each run of a turn's text as one string (the authors' way)
    # vocabulary entries the format adds ({text: id}), the default of a new model using it
    special_tokens: Mapping[str, int] = dataclasses.field(default_factory=dict)
    supervise_prefix: bool = False  # default for labelling the assistant's role prefix too

    def clean(self, content: str) -> str:
        """Removes from user-supplied content whatever would end or open a turn."""
        return re.sub(self.forbidden, self.forbidden_replacement, content.replace("\r\n", "\n"))

    def generation_prompt(self) -> str:
        """What ends a prompt that asks the model for the assistant's turn."""
        return self.turn_prefix["assistant"]

    def prefix(self, role: Role) -> str:
        return self.turn_prefix[role]


TEMPLATES: dict[str, ChatTemplate] = {
    # WorldRWKV's paper-era multimodal format (commit f15e179), with splice "prefix":
    # "\x16User: ...\x17\x16Assistant: ...\x17"; \x17 is token 24.
    "rwkv": ChatTemplate(
        name="rwkv",
        turn_prefix={"system": "\x16System:", "user": "\x16User:", "assistant": "\x16Assistant:"},
        content_prefix=" ",
        turn_end="\x17",
        stop_strings=(),
        stop_token_ids=(24,),
        forbidden="[\x16\x17]",
        forbidden_replacement="",
    ),
    # WorldRWKV's current release (infer/worldmodel.py, world/utils.py): no spaces, each image as
    # "<|vision_start|>" + "<|image_pad|>" * N + "<|vision_end|>" at the start of its turn, the
    # whole assistant turn supervised; with splice "turn_start" and the three special tokens.
    "worldrwkv": ChatTemplate(
        name="worldrwkv",
        turn_prefix={"system": "\x16System:", "user": "\x16User:", "assistant": "\x16Assistant:"},
        content_prefix="",
        turn_end="\x17",
        stop_strings=(),
        stop_token_ids=(24,),
        forbidden="[\x16\x17]",
        forbidden_replacement="",
        media_open={"image": "<|vision_start|>"},
        media_close={"image": "<|vision_end|>"},
        whole_turns=True,
        supervise_prefix=True,
        special_tokens={"<|vision_start|>": 65530, "<|vision_end|>": 65531, "<|image_pad|>": 65532},
    ),
    # The text-only RWKV World chat format: "User: ...\n\nAssistant: ...\n\n".
    "classic": ChatTemplate(
        name="classic",
        turn_prefix={"system": "System:", "user": "User:", "assistant": "Assistant:"},
        content_prefix=" ",
        turn_end="\n\n",
        stop_strings=("\n\n",),
        stop_token_ids=(261,),  # "\n\n" as a single token; the stop string covers other splits
        forbidden="\n\n+",  # ChatRWKV's convention: blank lines inside a turn become one newline
        forbidden_replacement="\n",
    ),
}


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template {name!r}; choose one of {sorted(TEMPLATES)}") from None

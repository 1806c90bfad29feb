"""Chat templates: the single place where turns become text, for training, inference and serving.

Each piece of a conversation is tokenised on its own and the token lists are concatenated, so the
tokens of a generation prompt are always a prefix of the tokens the model was trained on (greedy
longest-match tokenisation across a boundary could otherwise merge, e.g., "Assistant:" with the
reply's first space).
"""

from __future__ import annotations

import dataclasses
import re

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

    def clean(self, content: str) -> str:
        """Removes from user-supplied content whatever would end or open a turn."""
        return re.sub(self.forbidden, self.forbidden_replacement, content.replace("\r\n", "\n"))

    def generation_prompt(self) -> str:
        """What ends a prompt that asks the model for the assistant's turn."""
        return self.turn_prefix["assistant"]

    def prefix(self, role: Role) -> str:
        return self.turn_prefix[role]


TEMPLATES: dict[str, ChatTemplate] = {
    # WorldRWKV's multimodal format: "\x16User: ...\x17\x16Assistant: ...\x17"; \x17 is token 24.
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

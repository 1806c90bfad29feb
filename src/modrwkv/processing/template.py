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
from collections.abc import Mapping, Sequence

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

    def render(self, messages: Sequence[tuple[Role, str]], add_generation_prompt: bool = False) -> str:
        """The conversation as one text, cleaned, media markers left where they are: what
        transformers' ``apply_chat_template(tokenize=False)`` returns, and what `parse` reads back."""
        turns = "".join(self.prefix(role) + (self.content_prefix + self.clean(content) if content else "")
                        + self.turn_end for role, content in messages)
        return turns + (self.generation_prompt() if add_generation_prompt else "")

    def parse(self, text: str) -> tuple[list[tuple[Role, str]], bool] | None:
        """The (role, content) turns of a `render`ed text and whether it ends with the generation
        prompt; None for text that is not a whole rendering (e.g. a plain question). Exact because
        cleaned content cannot hold a turn end."""
        prefixes = "|".join(re.escape(p) for p in self.turn_prefix.values())
        turn = re.compile(f"({prefixes})(?:{re.escape(self.content_prefix)})?(.*?){re.escape(self.turn_end)}"
                          f"(?=(?:{prefixes})|$)", re.DOTALL)
        roles = {prefix: role for role, prefix in self.turn_prefix.items()}
        prompt = text.endswith(self.generation_prompt())
        body = text.removesuffix(self.generation_prompt()) if prompt else text
        turns, position = [], 0
        while position < len(body):
            match = turn.match(body, position)
            if match is None:
                return None
            turns.append((roles[match.group(1)], match.group(2)))
            position = match.end()
        return (turns, prompt) if turns else None

    def jinja(self) -> str:
        """This template as a Jinja chat template over text-only turns (`messages`,
        `add_generation_prompt`), for runtimes that format chats themselves, such as llama.cpp
        reading a GGUF file's `tokenizer.chat_template`. It renders the text our processor
        tokenises, cleaning included. Only templates whose cleaning Jinja can spell (it has no
        regular expressions) have one."""
        if self.forbidden not in _JINJA_CLEANING or self.media_open or self.special_tokens:
            raise ValueError(f"the {self.name!r} chat template has no Jinja equivalent")
        roles = "".join(
            f"{{%- {'if' if i == 0 else 'elif'} message['role'] == {_jinja_literal(role)} -%}}"
            f"{{{{- {_jinja_literal(prefix)} -}}}}"
            for i, (role, prefix) in enumerate(self.turn_prefix.items())
        )
        return (
            "{%- for message in messages -%}"
            "{%- set ns = namespace(content=message['content']) -%}"
            + _JINJA_CLEANING[self.forbidden].format(replacement=_jinja_literal(self.forbidden_replacement))
            + roles + "{%- endif -%}"
            "{%- if ns.content -%}"
            f"{{{{- {_jinja_literal(self.content_prefix)} + ns.content -}}}}"
            "{%- endif -%}"
            f"{{{{- {_jinja_literal(self.turn_end)} -}}}}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}"
            f"{{{{- {_jinja_literal(self.generation_prompt())} -}}}}"
            "{%- endif -%}"
        )


def _jinja_literal(text: str) -> str:
    """A Jinja string literal of plain text and newlines."""
    if not all(c == "\n" or " " <= c < "\x7f" for c in text) or "'" in text or "\\" in text:
        raise ValueError(f"{text!r} cannot be written as a simple Jinja string literal")
    return "'" + text.replace("\n", "\\n") + "'"


# Jinja spellings of the `forbidden` cleanings that one can be written for. A run of blank lines
# collapses to one newline: each pass halves every run, so 16 passes cover runs of 65536.
_JINJA_CLEANING = {
    "\n\n+": "{{%- for _ in range(16) -%}}"
               "{{%- set ns.content = ns.content.replace('\\n\\n', {replacement}) -%}}"
               "{{%- endfor -%}}",
}


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

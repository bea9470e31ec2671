"""Conversations made prompts: the Jinja chat template a chat model ships (tokenizer_config.json's chat_template, a
GGUF file's tokenizer.chat_template) rendered as transformers' apply_chat_template renders it: a sandboxed Jinja
environment that trims blocks, with raise_exception, tojson and strftime_now, the messages, add_generation_prompt
and the special tokens by name (bos_token, eos_token, ...)."""

from __future__ import annotations

import functools
import json
from datetime import datetime

from attnkit.errors import AttnkitError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant" | ..., "content": text}


def check_messages(messages: object, where: str = "messages") -> list[Message]:
    """`messages` if it is a conversation: a non-empty list of {"role", "content"} with strings; else one line."""
    if not isinstance(messages, list) or not messages:
        raise AttnkitError(f"{where}: expected a list of messages, each {{'role': ..., 'content': ...}}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise AttnkitError(f"{where}[{i}]: expected {{'role': ..., 'content': ...}} with a role")
        if not isinstance(message.get("content"), str):
            raise AttnkitError(f"{where}[{i}].content: expected a string")
    return messages


def render(template: str, messages: list[Message], specials: dict[str, str | None], generation: bool = True) -> str:
    """The prompt `template` makes of `messages` (with the assistant's turn opened if `generation`); a template
    that refuses the conversation (roles that do not alternate, a system message it has no room for) says why in
    one line."""
    import jinja2

    try:
        return _compiled(template).render(messages=messages, add_generation_prompt=generation, **specials)
    except jinja2.TemplateError as error:
        raise AttnkitError(f"the model's chat template: {error.message or error}") from None


@functools.lru_cache(maxsize=8)
def _compiled(template: str):  # noqa: ANN202 - a jinja2.Template
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    def tojson(value: object, ensure_ascii: bool = False, indent: int | None = None, **options: object) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **options)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as error:
        raise AttnkitError(f"the model's chat template, line {error.lineno}: {error.message}") from None

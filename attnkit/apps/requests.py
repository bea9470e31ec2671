"""The bodies the server takes, as pydantic models that FastAPI validates: one input or a list of them, with the
fields the model's task reads (`inputs_model`), and the options of /generate and /encode; and the one-line message
of a 422 that names the field."""

from __future__ import annotations

from typing import ClassVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from attnkit.errors import AttnkitError
from attnkit.nn.decoding import sampling_of


class Inputs(BaseModel):
    """One input or a list of them, as a task reads them (`inputs_model` makes one for its fields); an unknown field
    is refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid")
    FIELDS: ClassVar[tuple[str, ...]] = ("text",)  # one input's fields
    PLURAL: ClassVar[str] = "texts"  # the field of a list of inputs

    @model_validator(mode="after")
    def one_form(self) -> Inputs:
        given = [name for name in self.FIELDS if getattr(self, name) is not None]
        if (getattr(self, self.PLURAL) is None) == (not given) or 0 < len(given) < len(self.FIELDS):
            raise ValueError(self.forms())
        return self

    @classmethod
    def forms(cls) -> str:
        """E.g. 'give either "text" (one string) or "texts" (a list of strings)'."""
        if len(cls.FIELDS) == 1:
            return f'give either "{cls.FIELDS[0]}" (one string) or "{cls.PLURAL}" (a list of strings)'
        names = " and ".join(f'"{name}"' for name in cls.FIELDS)
        return f'give either {names} (strings) or "{cls.PLURAL}" (a list of objects with {names})'

    @property
    def single(self) -> bool:
        return getattr(self, self.PLURAL) is None

    def all(self) -> list:
        """The inputs: texts, or tuples of texts for a task whose input has several fields."""
        if self.single:
            items = [{name: getattr(self, name) for name in self.FIELDS}]
        else:
            items = [item if isinstance(item, str) else item.model_dump() for item in getattr(self, self.PLURAL)]
        return [item if isinstance(item, str) else _value(item, self.FIELDS) for item in items]

    def names(self) -> list[str]:
        """Each input's name in a message: "text", "texts[1]"."""
        if self.single:
            return [self.FIELDS[0]] if len(self.FIELDS) == 1 else [""]
        return [f"{self.PLURAL}[{i}]" for i in range(len(getattr(self, self.PLURAL)))]


def _value(item: dict, fields: tuple[str, ...]) -> str | tuple[str, ...]:
    return item[fields[0]] if len(fields) == 1 else tuple(item[name] for name in fields)


def inputs_model(fields: tuple[str, ...], name: str, base: type[Inputs] = Inputs) -> type[Inputs]:
    """The request body for inputs of `fields` (one text: "text"/"texts"; a pair: "text_a", "text_b"/"pairs"),
    with the options of `base`."""
    plural = f"{name}s"
    if len(fields) == 1:
        item: type = str
    else:
        strict = ConfigDict(extra="forbid")
        item = create_model(name.capitalize(), __config__=strict, **{field: (str, ...) for field in fields})
    body = create_model(
        base.__name__, __base__=base, **{f: (str | None, None) for f in fields}, **{plural: (list[item] | None, None)}
    )
    body.FIELDS, body.PLURAL = fields, plural
    return body


class GenerationOptions(Inputs):
    beam_size: int | None = Field(None, ge=1, le=16, description="beams (1: greedy); default: the model's")
    max_new_tokens: int | None = Field(None, ge=1, le=1024, description="most new tokens; default: the model's, 64")
    max_length: int | None = Field(None, ge=1, le=1024, description="the former name of max_new_tokens")
    temperature: float | None = Field(
        None, ge=0, le=100, description="above 0: sample; 0: greedy or beam search; default: the checkpoint's, else 0"
    )
    top_k: int | None = Field(None, ge=0, description="sample among the k likeliest tokens (0: all)")
    top_p: float | None = Field(None, gt=0, le=1, description="sample among the likeliest tokens of this much mass")
    seed: int | None = Field(None, description="the same seed draws the same samples")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="above 1: repeated tokens less likely")
    stop: list[str] = Field([], max_length=16, description="end an output before any of these texts")

    @model_validator(mode="after")
    def sampling_settings(self) -> GenerationOptions:
        if self.max_length is not None and self.max_new_tokens is not None:
            raise ValueError("max_length is the former name of max_new_tokens: give only max_new_tokens")
        if self.temperature is not None:  # settings that contradict each other; the checkpoint's fill in the rest
            try:
                sampling_of(self.temperature, self.top_k, self.top_p, self.seed, self.beam_size)
            except AttnkitError as error:
                raise ValueError(str(error)) from None
        return self

    def settings(self) -> dict:
        """How to generate, as Pipeline.generate takes it (None: the checkpoint's default)."""
        names = ("beam_size", "temperature", "top_k", "top_p", "seed", "repetition_penalty")
        new = self.max_new_tokens if self.max_new_tokens is not None else self.max_length
        return {"max_new_tokens": new, **{name: getattr(self, name) for name in names}, "stop": tuple(self.stop)}


class EncodingOptions(Inputs):
    normalize: bool = Field(False, description="scale each vector to length 1 (for cosine similarity)")


Encoding = inputs_model(("text",), "text", EncodingOptions)


def validation_message(error: RequestValidationError, forms: str | None = None) -> str:
    """A 422's one line: each problem as `field: problem`, the field named as the 413 messages name it (`text`,
    `texts[1]`, a query parameter by its name), `body` for the body as a whole; problems joined by "; ". A field the
    request should not have says what the model takes instead, where `forms` says it."""
    problems = []
    for each in error.errors():
        source, *path = each["loc"] or ("body",)
        if each["type"] == "json_invalid":
            reason = each.get("ctx", {}).get("error")
            problems.append(f"body: invalid JSON at character {path[0]}" + (f" ({reason})" if reason else ""))
            continue
        field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
        message = each["msg"].removeprefix("Value error, ") if each["type"] == "value_error" else each["msg"]
        if each["type"] == "extra_forbidden" and forms:
            message += f" ({forms})"
        problems.append(f"{field or source}: {message}")
    return "; ".join(problems)

"""The JSON bodies the web app accepts, as strict models: an int is an int, a string a string.

``{"session": true}`` or ``{"session": 1.0}`` is not session 1, and ``{"diagnosis": 3}`` is
not a diagnosis: pydantic's strict mode refuses every conversion, and unknown fields are
refused too. :func:`parse` turns a failure into a 422 naming the field and what was expected.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "AnswerBody",
    "EmptyBody",
    "FinishBody",
    "ReaderBody",
    "Refusal",
    "ReopenBody",
    "parse",
]

_ANSWER_ID = r"^[A-Za-z0-9_-]{16,64}$"


class Refusal(Exception):
    """A request the app refuses: ``http_status`` and a message for the person."""

    def __init__(self, http_status: int, message: str, **extra: Any) -> None:
        self.http_status = http_status
        self.message = message
        self.extra = extra
        super().__init__(message)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class AnswerBody(_Strict):
    """One click: the browser's own ID for it, the image and the diagnosis."""

    answer_id: str = Field(pattern=_ANSWER_ID)
    image_id: str = Field(max_length=200)
    diagnosis: str = Field(max_length=200)


class FinishBody(_Strict):
    """Hand in this session."""

    session: int = Field(ge=1, le=2)


class ReaderBody(_Strict):
    """A reader of the study (the coordinator's early opening)."""

    reader: str = Field(max_length=200)


class ReopenBody(_Strict):
    """Reopen a reader's handed-in session (the coordinator)."""

    reader: str = Field(max_length=200)
    session: int = Field(ge=1, le=2)


class EmptyBody(_Strict):
    """Commands without arguments (ingest, tally): ``{}``."""


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    """``data`` (decoded JSON) as ``model``, or :class:`Refusal` 422 naming each bad field."""
    if not isinstance(data, dict):
        raise Refusal(422, f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(str(p) for p in e["loc"]) or "body") + f": {e['msg']}" for e in exc.errors()
        )
    raise Refusal(422, f"invalid request: {problems}")

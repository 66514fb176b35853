"""One manifest row, checked: a case id fit for a dest folder name, image and mask as keys
under the source (a full URI or path inside it is made relative; ``image`` may name a DICOM
series folder), and the label as a class index. ``_manifest`` reads and writes whole files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from medcrypt.config import StrictModel
from medcrypt.errors import ConfigError
from medcrypt.storage import is_s3_uri, local_path, parse_s3_uri

__all__ = ["CASE_ID_PATTERN", "MANIFEST_COLUMNS", "ManifestRow"]

#: Columns in the order :func:`write_manifest` writes them; ``label`` and ``split`` optional.
MANIFEST_COLUMNS = ("case_id", "image", "mask", "label", "split")
_REQUIRED = ("case_id", "image", "mask")
#: Case ids become dest folder names: no ``/``, no leading ``_`` (reserved for ``_runs/`` ...).
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ManifestRow(StrictModel):
    """One case of the archive.

    Attributes:
        case_id: unique; letters, digits, ``.``, ``_``, ``-`` (starting with a letter/digit).
        image: key relative to the source root (or a URI when no source was given); a key
            ending in ``/`` is a folder holding a DICOM series.
        mask: key of the tumour mask, same rules (a single file).
        label: class name, or ``None`` when unknown.
        label_index: position of ``label`` in the class names the manifest was read with.
        split: optional free-text split name (``train``, ``test`` ...).
        line: line of the manifest this row came from (1-based; CSV header is line 1).
    """

    case_id: str
    image: str
    mask: str
    label: str | None = None
    label_index: int | None = None
    split: str | None = None
    line: int = Field(default=0, ge=0)

    @property
    def image_is_series(self) -> bool:
        """Whether ``image`` names a DICOM series folder rather than one file."""
        return self.image.endswith("/")

    @field_validator("case_id")
    @classmethod
    def _check_case_id(cls, v: str) -> str:
        if not CASE_ID_PATTERN.match(v):
            raise ValueError(
                "expected 1-128 letters, digits, '.', '_' or '-' starting with a letter or "
                f"digit (it becomes a folder name under dest), got {v!r}"
            )
        return v

    @field_validator("image", "mask")
    @classmethod
    def _check_location(cls, v: str, info: ValidationInfo) -> str:
        source = (info.context or {}).get("source")
        return _relative_to_source(v, source, allow_folder=info.field_name == "image")

    @field_validator("label", mode="before")
    @classmethod
    def _check_label(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None or (isinstance(v, str) and v.strip() == ""):
            return None
        names: Sequence[str] | None = (info.context or {}).get("class_names")
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ValueError(f"expected a class name or empty, got {v!r}")
        text = str(v).strip()
        if names is None:
            return text
        if text in names:
            return text
        if text.isdigit() and int(text) < len(names):
            return names[int(text)]
        raise ValueError(f"expected one of {', '.join(names)} (or empty), got {text!r}")

    @field_validator("split", mode="before")
    @classmethod
    def _check_split(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip() == ""):
            return None
        return v


def _relative_to_source(value: str, source: Any, *, allow_folder: bool) -> str:
    """Normalise ``value`` to a key under ``source`` (a parsed root), or reject it."""
    text = value.strip()
    if not text:
        raise ValueError("expected a key or URI, got an empty value")
    if text.endswith("/") and not allow_folder:
        raise ValueError(f"expected a single file, got the folder {text!r}")
    if source is None:
        return text
    kind, root = source
    folder = text.endswith("/")
    try:
        text = _inside(text, kind, root, folder)
    except ConfigError as exc:
        raise ValueError(exc.message) from exc
    body = text[:-1] if folder else text
    if "\\" in body or any(p in ("", ".", "..") for p in body.split("/")):
        raise ValueError(
            f"expected a key relative to the source {root} without empty, '.' or '..' "
            f"segments, got {value!r}"
        )
    return text


def _inside(text: str, kind: str, root: str, folder: bool) -> str:
    """``text`` as a key relative to ``root`` if it is a full URI/path inside it."""
    if is_s3_uri(text) or text.startswith("/") or text.startswith("file://"):
        if kind == "s3":
            if not is_s3_uri(text):
                raise ValueError(f"expected a key inside the source {root}, got {text!r}")
            full = parse_s3_uri(text).uri
        else:
            if is_s3_uri(text):
                raise ValueError(f"expected a key inside the source {root}, got {text!r}")
            full = str(local_path(text))
        if not full.startswith(root.rstrip("/") + "/"):
            raise ValueError(f"expected an object inside the source {root}, got {text!r}")
        text = full[len(root.rstrip("/")) + 1 :] + ("/" if folder else "")
    return text


def _parsed_source(source: str | None) -> tuple[str, str] | None:
    if source is None:
        return None
    if is_s3_uri(source):
        return "s3", parse_s3_uri(source, field="source").uri
    return "local", str(local_path(source, field="source"))

"""The medcrypt exception tree.

Every error medcrypt raises on purpose derives from :class:`MedcryptError`, so a caller can
catch one type at the top of a batch and turn it into a quarantine record. Errors from
third-party libraries (boto3, nibabel, pydicom, SimpleITK, torch) are translated at the
adapter boundary with ``raise ... from exc`` so the original traceback stays available.

::

    MedcryptError
    ├── ConfigError                 a config file, flag, manifest or URI is wrong
    │   └── ManifestError           manifest rows are invalid (all problems listed at once)
    ├── StorageError                asked for an object and did not get it
    │   ├── ObjectNotFoundError     the key / file does not exist
    │   ├── ObjectExistsError       a write-if-absent found the object already there
    │   ├── StorageAccessError      credentials or permissions refused the request
    │   └── TransientStorageError   a retryable failure outlived the retry budget
    ├── ImageFormatError            a file is not a usable image / mask for this case
    │   ├── EmptyMaskError          the tumour mask selects no voxel
    │   ├── GridMismatchError       mask and image do not share a grid or world space
    │   └── DicomSeriesError        a DICOM series is incomplete, mixed or inconsistent
    ├── EncryptionKeyError          a key is malformed or does not fit the model
    ├── ModelError                  a checkpoint is malformed or does not fit the data
    ├── JobError                    the archive job cannot start or continue
    └── StudyError                  reader-study creation, ingest or tally failed
        ├── AnswerSheetError        filled answer sheets failed validation (all problems)
        └── AnswerStoreError        the web app's answer database cannot be written now

Each error carries the context it knows about as attributes (``case_id``, ``uri``, ``path``,
``field``) so that records and logs can say *which* case and *which* file went wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AnswerSheetError",
    "AnswerStoreError",
    "ConfigError",
    "DicomSeriesError",
    "EmptyMaskError",
    "EncryptionKeyError",
    "GridMismatchError",
    "ImageFormatError",
    "JobError",
    "ManifestError",
    "MedcryptError",
    "ModelError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "StorageAccessError",
    "StorageError",
    "StudyError",
    "TransientStorageError",
]


class MedcryptError(Exception):
    """Base class of every error medcrypt raises deliberately.

    Args:
        message: what was expected and what arrived.
        case_id: the archive case this concerns, if any.
        uri: the object / file this concerns, if any (never a secret).
    """

    def __init__(self, message: str, *, case_id: str | None = None, uri: str | None = None) -> None:
        self.message = message
        self.case_id = case_id
        self.uri = uri
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.case_id is not None:
            where.append(f"case {self.case_id!r}")
        if self.uri is not None:
            where.append(f"file {self.uri!r}")
        if not where:
            return self.message
        return f"{', '.join(where)}: {self.message}"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep keyword context when errors cross process boundaries (Ray pickles them).
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[MedcryptError], message: str, state: dict[str, object]) -> MedcryptError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ConfigError(MedcryptError):
    """A config file, CLI flag, manifest or URI is invalid. Raised before any work starts."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        case_id: str | None = None,
        uri: str | None = None,
    ) -> None:
        self.field = field
        super().__init__(message, case_id=case_id, uri=uri)


class ManifestError(ConfigError):
    """One or more manifest rows are invalid; ``problems`` lists every one with its line."""

    def __init__(self, problems: Sequence[str], *, uri: str | None = None) -> None:
        self.problems = list(problems)
        text = f"{len(self.problems)} invalid manifest row(s):\n  " + "\n  ".join(self.problems)
        super().__init__(text, uri=uri)


class StorageError(MedcryptError):
    """A storage request failed. ``operation`` names what was asked (get, put, list, ...)."""

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        case_id: str | None = None,
        uri: str | None = None,
    ) -> None:
        self.operation = operation
        super().__init__(message, case_id=case_id, uri=uri)


class ObjectNotFoundError(StorageError):
    """The requested object or file does not exist."""


class ObjectExistsError(StorageError):
    """A conditional (write-if-absent) put found the object already present."""


class StorageAccessError(StorageError):
    """Credentials or permissions refused the request."""


class TransientStorageError(StorageError):
    """A retryable failure (5xx, throttling, connection reset) outlived the retry budget."""


class ImageFormatError(MedcryptError):
    """A file is not a usable image or mask for this case."""


class EmptyMaskError(ImageFormatError):
    """The tumour mask selects no voxel, so no slice can be chosen by tumour size."""


class GridMismatchError(ImageFormatError):
    """Mask and image are on incompatible grids (different world space or shape)."""


class DicomSeriesError(ImageFormatError):
    """A DICOM series is incomplete (missing slice), mixed (several series) or inconsistent."""


class EncryptionKeyError(MedcryptError):
    """An encryption key is malformed, unreadable, or does not fit the model it is used with."""


class ModelError(MedcryptError):
    """A model checkpoint is malformed or does not fit the data it is used with."""


class JobError(MedcryptError):
    """The archive job cannot start or continue (e.g. dest inside source, cluster unusable)."""


class StudyError(MedcryptError):
    """Reader-study creation, ingest or tally failed."""


class AnswerSheetError(StudyError):
    """Filled answer sheets failed validation; ``problems`` lists each with sheet and line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        text = f"{len(self.problems)} problem(s) in answer sheets:\n  " + "\n  ".join(self.problems)
        super().__init__(text)


class AnswerStoreError(StudyError):
    """The study web app's answer database (``STUDY/answers.sqlite``) refused a read or write:
    locked by another process, read-only, or the disk is full. ``reason`` is ``locked``,
    ``read-only``, ``full``, ``io`` or ``other``; the answer was not stored and may be sent
    again."""

    def __init__(self, message: str, *, reason: str, uri: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, uri=uri)

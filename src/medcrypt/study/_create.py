"""Create a reader study: seeded per-reader orders, blinded packets, answer sheets, the key.

Study folder layout (``out``)::

    out/study.json                                   public manifest (no secret, no truth)
    out/README.md, out/blinding.json                 design, dates and the blinding check
                                                     (pixel separability of the versions)
    out/packets/<reader>/session-<n>/packet.html     printable packet, instructions first
    out/packets/<reader>/session-<n>/packet.pdf      the same as PDF (``pdf_packets: true``)
    out/packets/<reader>/session-<n>/images/<id>.png uncompressed 16-bit PNGs, one size
    out/packets/<reader>/session-<n>/answers_<reader>_session-<n>.csv
    out/unblinding/key.json (default; ``key_path``)   0o600: ID -> case, version, truth + secret

Only ``packets/`` goes to readers. Nothing in it names a case or a version: image file names
are keyed hashes, every image file has the same size and chunk layout, image files are
written in presentation order and all packet files get the same modification time. Whether
the *pixels* tell the versions apart is measured, not assumed (:mod:`._blinding`): the figures
go into ``README.md`` and ``CreatedStudy.blinding``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcrypt._types import ProgressCallback
from medcrypt.errors import StudyError
from medcrypt.study._blinding import BlindingCheck, blinding_markdown, check_blinding
from medcrypt.study._config import StudyConfig
from medcrypt.study._images import encode_packet_png, pad_to
from medcrypt.study._key import (
    VERSIONS,
    ImageEntry,
    SessionAssignment,
    UnblindingKey,
    Version,
    image_id,
    new_secret,
    save_key,
    sheet_code,
)
from medcrypt.study._packet import SHEET_COLUMNS, packet_html, sheet_csv, sheet_name
from medcrypt.study._pdf import packet_pdf
from medcrypt.study._sources import StudyCase

__all__ = [
    "SHEET_COLUMNS",
    "CreatedStudy",
    "create_study",
    "plan_sessions",
    "sheet_name",
]

logger = logging.getLogger(__name__)


def packet_dir(study_dir: Path, reader: str, session: int) -> Path:
    return Path(study_dir) / "packets" / reader / f"session-{session}"


@dataclass(frozen=True)
class CreatedStudy:
    """Where :func:`create_study` wrote things (never the secret itself)."""

    study_dir: Path
    key_path: Path
    session_dates: dict[int, dt.date]
    assignments: tuple[SessionAssignment, ...]
    #: separability of the two versions' packet images (see :mod:`._blinding`)
    blinding: BlindingCheck | None = None

    @property
    def packets_dir(self) -> Path:
        """The only folder that goes to readers."""
        return self.study_dir / "packets"

    def packet(self, reader: str, session: int) -> Path:
        return packet_dir(self.study_dir, reader, session)

    def sheet(self, reader: str, session: int) -> Path:
        return self.packet(reader, session) / sheet_name(reader, session)


def plan_sessions(
    config: StudyConfig, case_ids: Sequence[str]
) -> dict[tuple[str, int], list[tuple[str, Version]]]:
    """Which (case, version) each reader sees in each session, in presentation order.

    ``paper``: session 1 = every original, session 2 = every protected image.
    ``counterbalanced``: cases are split at random (seeded) into two halves A and B; readers
    0, 2, 4, ... see A's originals and B's protected images in session 1 and the other
    versions in session 2; readers 1, 3, 5, ... the reverse. Each session then holds one
    version of every case, never both.

    Every reader's order within each session is an independent seeded permutation.
    Deterministic in ``config.seed``, the reader list and the sorted case IDs.
    """
    cases = sorted(case_ids)
    seeds = np.random.SeedSequence(config.seed).spawn(1 + len(config.readers))
    split = np.random.default_rng(seeds[0]).permutation(len(cases))
    half_a = {cases[i] for i in split[: (len(cases) + 1) // 2]}
    plan: dict[tuple[str, int], list[tuple[str, Version]]] = {}
    for r_index, reader in enumerate(config.readers):
        rng = np.random.default_rng(seeds[1 + r_index])
        for session in (1, 2):
            items: list[tuple[str, Version]] = []
            for case in cases:
                if config.design == "paper":
                    version: Version = "original" if session == 1 else "protected"
                else:
                    original_first = (case in half_a) == (r_index % 2 == 0)
                    first: Version = "original" if original_first else "protected"
                    second: Version = "protected" if original_first else "original"
                    version = first if session == 1 else second
                items.append((case, version))
            order = rng.permutation(len(items))
            plan[(reader, session)] = [items[i] for i in order]
    return plan


def _common_shape(cases: Sequence[StudyCase]) -> tuple[int, int]:
    h = max(c.original.shape[0] for c in cases)
    w = max(c.original.shape[1] for c in cases)
    return (h, w)


def create_study(
    config: StudyConfig,
    cases: Sequence[StudyCase],
    out_dir: Path,
    *,
    key_path: Path | None = None,
    today: dt.date | None = None,
    progress: ProgressCallback | None = None,
) -> CreatedStudy:
    """Write packets, answer sheets, the public manifest and the unblinding key.

    Slices of different sizes are centred on a common black canvas (the largest height and
    width in the study) so every packet image has one size.

    Raises:
        StudyError: no cases, a repeated case ID, a label outside the class list, an existing
            study in ``out_dir`` or an existing key file.
    """
    out_dir = Path(out_dir)
    key_path = Path(key_path) if key_path is not None else out_dir / "unblinding" / "key.json"
    _check_inputs(config, cases, out_dir, key_path)

    start = config.start_date or today or dt.datetime.now(dt.UTC).date()
    session_dates = {1: start, 2: start + dt.timedelta(days=config.washout_days)}
    secret = new_secret()
    by_case = {c.case_id: c for c in cases}
    shape = _common_shape(cases)
    if any(c.original.shape != shape for c in cases):
        logger.info("slices differ in size; centring all on a %dx%d canvas", *shape)

    images: dict[str, ImageEntry] = {}
    for case in cases:
        for version in VERSIONS:
            iid = image_id(secret, case.case_id, version)
            if iid in images:
                raise StudyError("opaque image ID collision; create the study again")
            images[iid] = ImageEntry(case_id=case.case_id, version=version, truth=case.label)

    plan = plan_sessions(config, list(by_case))
    assignments = tuple(
        SessionAssignment(
            reader=reader,
            session=session,
            sheet_code=sheet_code(secret, reader, session),
            image_ids=tuple(image_id(secret, c, v) for c, v in items),
        )
        for (reader, session), items in plan.items()
    )
    key = UnblindingKey(
        config=config,
        secret_hex=secret.hex(),
        created_on=today or dt.datetime.now(dt.UTC).date(),
        session_dates=session_dates,
        images=images,
        assignments=assignments,
    )
    # Encode every image before anything is written, so a bad image leaves nothing behind.
    encoded: dict[str, bytes] = {}
    padded: dict[str, np.ndarray] = {}
    for case in cases:
        for version in VERSIONS:
            array = case.original if version == "original" else case.protected
            iid = image_id(secret, case.case_id, version)
            padded[iid] = pad_to(array, shape)
            encoded[iid] = encode_packet_png(padded[iid])
    blinding = check_blinding(
        {
            c.case_id: tuple(padded[image_id(secret, c.case_id, v)] for v in VERSIONS)  # type: ignore[misc]
            for c in cases
        }
    )
    # Not a logging warning: the CLI prints it to stderr, and the README holds it for good.
    logger.info("%s", blinding.summary())
    sizes = {len(b) for b in encoded.values()}
    if len(sizes) != 1:  # pragma: no cover - guarded by the fixed-size encoder
        raise StudyError(f"packet images differ in byte size {sorted(sizes)}; blinding broken")
    # Then the key: packets without their key are useless; save_key refuses to overwrite.
    save_key(key, key_path)

    total = len(assignments)
    for done, a in enumerate(assignments):
        _write_packet(out_dir, config, a, encoded, padded, session_dates)
        if progress is not None:
            progress(done + 1, total, f"{a.reader} session {a.session}")
    _write_manifest(out_dir, key)
    _write_readme(out_dir, key, blinding)
    logger.info(
        "created study %r: %d cases, %d readers, design %s, packets in %s",
        config.name,
        len(cases),
        len(config.readers),
        config.design,
        out_dir / "packets",
    )
    return CreatedStudy(
        study_dir=out_dir,
        key_path=key_path,
        session_dates=dict(key.session_dates),
        assignments=key.assignments,
        blinding=blinding,
    )


def _check_inputs(
    config: StudyConfig, cases: Sequence[StudyCase], out_dir: Path, key_path: Path
) -> None:
    problems: list[str] = []
    if not cases:
        problems.append("no cases to put in the study")
    seen: set[str] = set()
    for c in cases:
        if c.case_id in seen:
            problems.append(f"case {c.case_id!r} appears twice")
        seen.add(c.case_id)
        if c.label not in config.classes:
            problems.append(f"case {c.case_id!r}: label {c.label!r} not in {list(config.classes)}")
        if not (np.all(np.isfinite(c.original)) and np.all(np.isfinite(c.protected))):
            problems.append(f"case {c.case_id!r}: image holds NaN or infinite values")
        if c.original.shape != c.protected.shape or c.original.ndim != 2:
            problems.append(
                f"case {c.case_id!r}: versions must be 2D and the same shape, got "
                f"{c.original.shape} and {c.protected.shape}"
            )
    if problems:
        raise StudyError(f"{len(problems)} problem(s) with the cases:\n  " + "\n  ".join(problems))
    packets = out_dir / "packets"
    if packets.exists() and any(packets.iterdir()):
        raise StudyError("a study already exists here (packets/ is not empty)", uri=str(out_dir))
    if key_path.exists():
        raise StudyError(
            "an unblinding key already exists; refusing to overwrite", uri=str(key_path)
        )
    try:
        key_path.resolve().relative_to(packets.resolve())
    except ValueError:
        pass
    else:
        raise StudyError(
            "the unblinding key must not be inside the packets folder", uri=str(key_path)
        )


def _write_packet(
    out_dir: Path,
    config: StudyConfig,
    a: SessionAssignment,
    encoded: dict[str, bytes],
    padded: dict[str, np.ndarray],
    dates: dict[int, dt.date],
) -> None:
    folder = packet_dir(out_dir, a.reader, a.session)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    # Write images in presentation order, so file times follow nothing but that order.
    for iid in a.image_ids:
        path = folder / "images" / f"{iid}.png"
        path.write_bytes(encoded[iid])
        written.append(path)
    html_path = folder / "packet.html"
    html_path.write_text(packet_html(config, a, dates), encoding="utf-8")
    sheet_path = folder / sheet_name(a.reader, a.session)
    sheet_path.write_text(sheet_csv(config, a, dates), encoding="utf-8")
    written += [html_path, sheet_path]
    if config.pdf_packets:
        pdf_path = folder / "packet.pdf"
        pdf_path.write_bytes(
            packet_pdf(config, a, dates, padded, sheet=sheet_name(a.reader, a.session))
        )
        written.append(pdf_path)
    # One modification time for every file of the packet: midnight UTC of its first day.
    stamp = dt.datetime.combine(dates[a.session], dt.time(0, 0), tzinfo=dt.UTC).timestamp()
    for path in written:
        os.utime(path, (stamp, stamp))


def _write_manifest(out_dir: Path, key: UnblindingKey) -> None:
    manifest = {
        "format": "medcrypt-study/1",
        "config": key.config.model_dump(mode="json"),
        "created_on": key.created_on.isoformat(),
        "session_not_before": {str(s): d.isoformat() for s, d in key.session_dates.items()},
        "n_cases": len(key.cases()),
        "packets": [
            {
                "reader": a.reader,
                "session": a.session,
                "folder": str(packet_dir(Path("."), a.reader, a.session)),
                "sheet": sheet_name(a.reader, a.session),
                "sheet_code": a.sheet_code,
                "order": list(a.image_ids),
            }
            for a in key.assignments
        ],
    }
    (out_dir / "study.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_readme(out_dir: Path, key: UnblindingKey, blinding: BlindingCheck) -> None:
    """The study's README.md (for the ethics file): design, dates and the blinding figures."""
    cfg = key.config
    text = "\n".join(
        [
            f"# Reader study {cfg.name}",
            "",
            f"Design `{cfg.design}`, {len(key.cases())} cases, readers {', '.join(cfg.readers)}; "
            f"session 1 from {key.session_dates[1].isoformat()}, session 2 not before "
            f"{key.session_dates[2].isoformat()} (washout {cfg.washout_days} days). Only "
            "`packets/` goes to readers; the unblinding key stays with the coordinator.",
            "",
            blinding_markdown(blinding),
        ]
    )
    (out_dir / "README.md").write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    (out_dir / "blinding.json").write_text(
        json.dumps(blinding.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )

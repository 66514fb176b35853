"""iMRMC input files (``imrmc/<class>.imrmc``) and how they are written.

Format, as read by iMRMC's ``InputFile`` (DIDSR/iMRMC, ``getExperimentSizeFromHeader`` and
``verifySizesAndGetIDs``): every line before the one that *starts* with ``BEGIN DATA:`` is
header. Each header line is upper-cased and searched for ``N0:``, ``N1:``, ``NR:`` and ``NM:``
*anywhere* in it; a line that contains one is parsed as that field, reading an integer from its
fourth character on. So free text must contain none of those four strings in any case (a
study named ``pilot-run1`` followed by ``:`` reads as ``N1:`` and iMRMC stops with "Text
following is not an integer"): description lines here carry no ``:`` at all. Data rows are
``readerID,caseID,modalityID,score``; truth rows ``-1,caseID,0,truth``. A reader-modality
combination with two or fewer signal-present (or signal-absent) cases is dropped from the ROC
analysis ("reads less than 2 normal or less than 2 disease cases"; the scores are kept only
when both counts are > 2), so such classes are warned about here.

iMRMC analyses binary tasks, and this study has a closed list of several diagnoses, so one
file is written per class, one-vs-rest:

- truth = 1 when the case's ground truth is that class, else 0;
- score = 1 when the reader gave that diagnosis, else 0 (a binary score);
- modality 1 = original image, 2 = protected image;
- reader and case IDs are integers 1..R and 1..K; ``imrmc/ids.csv`` maps them back to reader
  names and case IDs.

The export is unblinded (case IDs with truth), so the folder is created 0700 and every file
in it 0600, like the key.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from medcrypt._private_files import write_private
from medcrypt.study._key import UnblindingKey
from medcrypt.study._log import AnswerRecord

__all__ = ["IMRMC_FIELDS", "imrmc_files", "imrmc_warnings", "sanitise_header", "write_private_file"]

logger = logging.getLogger(__name__)

_MODALITY = {"original": 1, "protected": 2}
#: the header fields iMRMC looks for anywhere in an upper-cased header line.
IMRMC_FIELDS = ("N0:", "N1:", "NR:", "NM:")
#: iMRMC drops a reader-modality combination unless both case counts are above this.
_IMRMC_MIN_CASES = 2


def sanitise_header(text: str) -> str:
    """Free text safe for an iMRMC header line: no ``:`` (so no field can be matched), no
    trailing commas (iMRMC strips them), no line breaks, printable ASCII only."""
    cleaned = re.sub(r"[^ -~]", "?", text.replace("\n", " ").replace("\r", " "))
    return cleaned.replace(":", " -").rstrip(", ")


def imrmc_warnings(key: UnblindingKey) -> list[str]:
    """Classes whose file iMRMC will not analyse (too few cases with or without the class)."""
    truth = key.cases()
    n = len(truth)
    out: list[str] = []
    for cls in key.config.classes:
        n1 = sum(1 for t in truth.values() if t == cls)
        if n1 in (0, n):
            continue  # no file at all; said in README.txt
        if min(n1, n - n1) <= _IMRMC_MIN_CASES:
            out.append(
                f"iMRMC will drop class {cls!r}: it has {n1} case(s) with and {n - n1} without "
                f"the class, and iMRMC analyses a reader and modality only with more than "
                f"{_IMRMC_MIN_CASES} of each"
            )
    return out


def imrmc_files(key: UnblindingKey, answers: Sequence[AnswerRecord]) -> dict[str, str]:
    """File name -> text of every iMRMC export file (see the module docstring)."""
    readers = list(key.config.readers)
    cases = list(key.cases())
    truth = key.cases()
    r_num = {r: i for i, r in enumerate(readers, start=1)}
    c_num = {c: i for i, c in enumerate(cases, start=1)}
    rows = sorted(
        (
            r_num[a.reader],
            c_num[key.images[a.image_id].case_id],
            _MODALITY[key.images[a.image_id].version],
            a.diagnosis,
        )
        for a in answers
    )
    files: dict[str, str] = {}
    skipped: list[str] = []
    name = sanitise_header(key.config.name)
    for cls in key.config.classes:
        n1 = sum(1 for c in cases if truth[c] == cls)
        if n1 in (0, len(cases)):
            # iMRMC needs signal-present and signal-absent cases; this class has only one kind.
            skipped.append(f"{cls} (N1 = {n1} of {len(cases)} cases)")
            continue
        description = [
            f"medcrypt reader study {name} - one-vs-rest for class {sanitise_header(cls)}",
            "truth 1 = ground truth is this class; score 1 = reader gave this diagnosis",
            "modality 1 = original image, modality 2 = protected image",
            "reader and case numbers are mapped in ids.csv",
        ]
        out = io.StringIO()
        for line in description:
            out.write(sanitise_header(line) + "\n")
        out.write(f"N0: {len(cases) - n1}\nN1: {n1}\nNR: {len(readers)}\nNM: 2\nBEGIN DATA:\n")
        for case in cases:
            out.write(f"-1,{c_num[case]},0,{int(truth[case] == cls)}\n")
        for reader, case_n, modality, dx in rows:
            out.write(f"{reader},{case_n},{modality},{int(dx == cls)}\n")
        files[f"{cls}.imrmc"] = out.getvalue()
    ids = io.StringIO()
    writer = csv.writer(ids, lineterminator="\n")
    writer.writerow(["kind", "number", "name"])
    writer.writerows(["reader", n, r] for r, n in r_num.items())
    writer.writerows(["case", n, c] for c, n in c_num.items())
    writer.writerows([["modality", 1, "original"], ["modality", 2, "protected"]])
    files["ids.csv"] = ids.getvalue()
    readme = _IMRMC_README
    if skipped:
        readme += (
            "\nNo file for these classes (iMRMC needs cases with and without the class):\n"
            + "".join(f"  {s}\n" for s in skipped)
        )
    dropped = imrmc_warnings(key)
    if dropped:
        readme += "\nWarning: files that iMRMC will not analyse:\n" + "".join(
            f"  {w}\n" for w in dropped
        )
    files["README.txt"] = readme
    return files


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, owner-only (0600) from the first byte, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    write_private(tmp, text.encode("utf-8"))
    os.replace(tmp, path)


_IMRMC_README = """iMRMC input files written by medcrypt study tally.
UNBLINDED (case IDs and truth): owner-only files; keep them with the unblinding key.

One file per diagnosis class, <class>.imrmc, for a one-vs-rest binary task:
  - free-text description lines (no colons, so iMRMC reads no field from them), then N0
    (cases without the class), N1 (cases with it), NR (readers) and NM (modalities = 2),
    then the line "BEGIN DATA:";
  - truth rows:   -1,<case>,0,<1 if the ground truth is this class else 0>
  - reader rows:  <reader>,<case>,<modality>,<1 if the reader gave this diagnosis else 0>
    with modality 1 = original image, 2 = protected image.
Reader and case numbers are listed in ids.csv. Scores are binary (0/1), so the AUC that
iMRMC reports per modality is the mean of sensitivity and specificity for that class; the
modality comparison (1 vs 2) is the question of the study. iMRMC analyses a reader and
modality only with more than 2 cases with and more than 2 without the class.
"""

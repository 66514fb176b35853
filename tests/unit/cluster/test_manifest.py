"""Manifest reading: every invalid row reported at once with its line, then streamed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcrypt.cluster._manifest import (
    MAX_PROBLEMS,
    ManifestRow,
    read_manifest,
    write_manifest,
)
from medcrypt.errors import ConfigError, ManifestError

NAMES = ("meningioma", "chordoma", "schwannoma")


def _csv(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_good_csv_streams_rows_with_lines(tmp_path: Path) -> None:
    p = _csv(
        tmp_path,
        "case_id,image,mask,label,split\n"
        "c1,c1/image.nii.gz,c1/mask.nii.gz,chordoma,train\n"
        "\n"
        "c2,c2/image/,c2/mask.nii.gz,,\n"
        "c3,c3/image.nii.gz,c3/mask.nii.gz,2,test\n",
    )
    m = read_manifest(p, class_names=NAMES)
    assert len(m) == 3
    rows = list(m)
    assert [r.case_id for r in rows] == ["c1", "c2", "c3"]
    assert [r.line for r in rows] == [2, 4, 5]
    assert (rows[0].label, rows[0].label_index, rows[0].split) == ("chordoma", 1, "train")
    assert (rows[1].label, rows[1].label_index, rows[1].split) == (None, None, None)
    assert rows[1].image_is_series and not rows[0].image_is_series
    assert (rows[2].label, rows[2].label_index) == ("schwannoma", 2)  # an index is accepted
    assert list(m) == rows  # re-iterable: streams the file again


def test_label_and_split_columns_are_optional(tmp_path: Path) -> None:
    p = _csv(tmp_path, "image,mask,case_id\na/i.nii,a/m.nii,a\n")
    (row,) = read_manifest(p, class_names=NAMES)
    assert (row.case_id, row.label, row.split) == ("a", None, None)


def test_every_invalid_row_is_reported_with_its_line(tmp_path: Path) -> None:
    p = _csv(
        tmp_path,
        "case_id,image,mask,label\n"
        "c1,c1/image.nii.gz,c1/mask.nii.gz,chordoma\n"  # line 2 ok
        "c1,c1b/image.nii.gz,c1b/mask.nii.gz,\n"  # 3 duplicate
        ",c3/image.nii.gz,c3/mask.nii.gz,\n"  # 4 missing case_id
        "c4,,c4/mask.nii.gz,\n"  # 5 missing image
        "c5,c5/image.nii.gz,c5/mask.nii.gz,glioma\n"  # 6 unknown label
        "c6,../escape.nii.gz,c6/mask.nii.gz,\n"  # 7 outside source
        "c7,s3://other-bucket/c7/image.nii.gz,c7/mask.nii.gz,\n"  # 8 outside source
        "_runs,x/i.nii,x/m.nii,\n"  # 9 reserved-looking case id
        "c9,c9/i.nii,c9/m/,\n"  # 10 mask is a folder
        "c10,a,b,,extra\n",  # 11 too many values
    )
    with pytest.raises(ManifestError) as err:
        read_manifest(p, source="s3://archive-bucket/in", class_names=NAMES)
    problems = err.value.problems
    text = "\n".join(problems)
    for expected in (
        "line 3: case_id: 'c1' repeats line 2",
        "line 4: case_id: missing",
        "line 5: image: missing",
        "line 6: label: expected one of meningioma, chordoma, schwannoma",
        "line 7: image: expected a key relative to the source",
        "line 8: image: expected an object inside the source s3://archive-bucket/in",
        "line 9: case_id: expected 1-128 letters",
        "line 10: mask: expected a single file",
        "line 11: expected 4 values, got 5",
    ):
        assert expected in text, expected
    assert len(problems) == 9
    assert not any(p.startswith("line 2:") for p in problems)
    assert err.value.uri == str(p)
    assert "9 invalid manifest row(s)" in str(err.value)
    assert isinstance(err.value, ConfigError)


def test_full_uris_inside_the_source_become_keys(tmp_path: Path) -> None:
    p = _csv(
        tmp_path,
        "case_id,image,mask,label\n"
        "c1,s3://archive-bucket/in/c1/image.nii.gz,s3://archive-bucket/in/c1/mask.nii.gz,\n"
        "c2,s3://archive-bucket/in/c2/dicom/,c2/mask.nii.gz,\n",
    )
    rows = list(read_manifest(p, source="s3://archive-bucket/in/", class_names=NAMES))
    assert [(r.image, r.mask) for r in rows] == [
        ("c1/image.nii.gz", "c1/mask.nii.gz"),
        ("c2/dicom/", "c2/mask.nii.gz"),
    ]
    # a sibling prefix that merely starts with the same letters is outside
    q = _csv(tmp_path, "case_id,image,mask\nc1,s3://archive-bucket/in2/i.nii,m.nii\n", "q.csv")
    with pytest.raises(ManifestError, match="line 2: image: expected an object inside"):
        read_manifest(q, source="s3://archive-bucket/in", class_names=NAMES)


def test_local_source_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    p = _csv(
        tmp_path,
        f"case_id,image,mask\nc1,{src}/c1/i.nii.gz,c1/m.nii.gz\nc2,{tmp_path}/x/i.nii,c2/m.nii\n",
    )
    with pytest.raises(ManifestError) as err:
        read_manifest(p, source=str(src), class_names=NAMES)
    assert err.value.problems == [
        f"line 3: image: expected an object inside the source {src}, got '{tmp_path}/x/i.nii'"
    ]


def test_jsonl(tmp_path: Path) -> None:
    lines = [
        {"case_id": "a", "image": "a/i.nii.gz", "mask": "a/m.nii.gz", "label": "meningioma"},
        {"case_id": "b", "image": "b/i.nii.gz", "mask": "b/m.nii.gz", "label": None},
        "not json",
        [1, 2],
        {"case_id": "c", "image": "c/i.nii.gz", "mask": "c/m.nii.gz", "colour": "red"},
        {"case_id": "d", "image": 5, "mask": "d/m.nii.gz"},
    ]
    p = tmp_path / "m.jsonl"
    p.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as err:
        read_manifest(p, class_names=NAMES)
    problems = err.value.problems
    assert problems[0].startswith("line 3: not valid JSON")
    assert problems[1] == "line 4: expected a JSON object, got list"
    assert problems[2].startswith("line 5: unknown field(s) 'colour'")
    assert problems[3].startswith("line 6: image: Input should be a valid string")
    assert len(problems) == 4
    p.write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n", encoding="utf-8")
    rows = list(read_manifest(p, class_names=NAMES))
    assert [(r.case_id, r.label, r.label_index) for r in rows] == [
        ("a", "meningioma", 0),
        ("b", None, None),
    ]


def test_header_problems(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"missing column.*mask.*unknown column.*'colour'"):
        read_manifest(_csv(tmp_path, "case_id,image,colour\n"), class_names=NAMES)
    with pytest.raises(ManifestError, match="empty file"):
        read_manifest(_csv(tmp_path, ""), class_names=NAMES)


def test_unreadable_manifests_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.csv or \.jsonl"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ConfigError, match="found nothing") as err:
        read_manifest(tmp_path / "absent.csv")
    assert err.value.field == "manifest"
    (tmp_path / "bin.csv").write_bytes(b"case_id,image,mask\n\xff\xfe,x,y\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        read_manifest(tmp_path / "bin.csv")


def test_problem_list_is_capped(tmp_path: Path) -> None:
    body = "".join(f"c{i},,m.nii\n" for i in range(MAX_PROBLEMS + 50))
    with pytest.raises(ManifestError) as err:
        read_manifest(_csv(tmp_path, "case_id,image,mask\n" + body), class_names=NAMES)
    assert len(err.value.problems) == MAX_PROBLEMS + 1
    assert err.value.problems[-1] == "... and 50 more problem(s) not shown"


def test_default_class_names_come_from_medical(tmp_path: Path) -> None:
    from medcrypt.medical import CLASS_NAMES

    p = _csv(tmp_path, f"case_id,image,mask,label\na,a/i.nii,a/m.nii,{CLASS_NAMES[-1]}\n")
    (row,) = read_manifest(p)
    assert row.label_index == len(CLASS_NAMES) - 1


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    rows = [
        ManifestRow(case_id="a", image="a/image.nii.gz", mask="a/mask.nii.gz", label="chordoma"),
        ManifestRow(case_id="b", image="b/image/", mask="b/mask.nii.gz", split="test"),
    ]
    out = tmp_path / "sub" / "manifest.csv"
    assert write_manifest(iter(rows), out) == 2
    back = list(read_manifest(out, class_names=NAMES))
    assert [(r.case_id, r.image, r.mask, r.label, r.split) for r in back] == [
        ("a", "a/image.nii.gz", "a/mask.nii.gz", "chordoma", None),
        ("b", "b/image/", "b/mask.nii.gz", None, "test"),
    ]
    assert [p.name for p in out.parent.iterdir()] == ["manifest.csv"]
    with pytest.raises(ConfigError, match=r"\.csv"):
        write_manifest(rows, tmp_path / "m.json")

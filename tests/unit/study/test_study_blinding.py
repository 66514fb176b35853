"""Blinding: nothing in a packet reveals a version, a pairing or the key."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from medcrypt.medical import decode_png16
from medcrypt.study import image_id, load_key
from medcrypt.study._key import new_secret

pytestmark = pytest.mark.timeout(60)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every PNG chunk, checking each CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload)
        out.append((kind, payload))
        pos += 12 + length
    return out


def _packet_files(made) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted(p for p in made.packets_dir.rglob("*") if p.is_file())


def test_all_packet_images_have_one_size_and_identical_chunks(make_study):  # type: ignore[no-untyped-def]
    made, _ = make_study()
    images = sorted(made.packets_dir.rglob("*.png"))
    assert len(images) == 2 * 10 * 3  # 10 cases x 2 versions x 3 readers
    blobs = [p.read_bytes() for p in images]
    assert len({len(b) for b in blobs}) == 1, "image byte sizes differ: the size leaks"
    layouts = {tuple((k, len(v)) for k, v in _chunks(b)) for b in blobs}
    assert len(layouts) == 1, "chunk layout differs between images"
    kinds = [k for k, _ in _chunks(blobs[0])]
    assert set(kinds) <= {b"IHDR", b"IDAT", b"IEND"}, f"ancillary chunks present: {kinds}"
    # every non-pixel chunk is byte-identical
    non_pixel = {tuple((k, v) for k, v in _chunks(b) if k != b"IDAT") for b in blobs}
    assert len(non_pixel) == 1


def test_packet_images_are_lossless_copies(make_study, phantoms):  # type: ignore[no-untyped-def]
    made, _ = make_study()
    key = load_key(made.key_path)
    for iid, entry in list(key.images.items())[:6]:
        folder = phantoms.originals if entry.version == "original" else phantoms.protected
        source = decode_png16((folder / f"{entry.case_id}.png").read_bytes())
        packet = next(made.packets_dir.rglob(f"{iid}.png"))
        np.testing.assert_array_equal(decode_png16(packet.read_bytes()), source)


def test_no_name_content_or_time_reveals_case_or_version(make_study, phantoms):  # type: ignore[no-untyped-def]
    made, _ = make_study()
    forbidden = [*phantoms.truth, "original", "protect", "encrypt", "_originals"]
    for path in _packet_files(made):
        rel = str(path.relative_to(made.packets_dir)).lower()
        assert not any(w.lower() in rel for w in forbidden), rel
        if path.suffix in (".html", ".csv"):
            text = path.read_text(encoding="utf-8").lower()
            hits = [w for w in forbidden if w.lower() in text]
            assert not hits, f"{rel} mentions {hits}"
    for folder in {p.parent for p in made.packets_dir.rglob("packet.html")}:
        mtimes = {p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}
        assert len(mtimes) == 1, f"files in {folder} have different modification times"


def test_ids_are_keyed_and_unlinkable_without_the_key(make_study):  # type: ignore[no-untyped-def]
    made, _ = make_study()
    key = load_key(made.key_path)
    other = new_secret()
    for iid, entry in key.images.items():
        assert image_id(key.secret, entry.case_id, entry.version) == iid
        assert image_id(other, entry.case_id, entry.version) != iid
    # the two versions of one case share nothing visible: compare ID prefixes
    by_case: dict[str, list[str]] = {}
    for iid, entry in key.images.items():
        by_case.setdefault(entry.case_id, []).append(iid)
    shared = sum(a[:4] == b[:4] for a, b in by_case.values())
    assert shared <= 1


def test_key_is_apart_owner_only_and_not_in_packets(make_study):  # type: ignore[no-untyped-def]
    made, _ = make_study()
    key = load_key(made.key_path)
    assert stat.S_IMODE(made.key_path.stat().st_mode) == 0o600
    assert made.packets_dir not in made.key_path.parents
    secret = key.secret_hex
    for path in _packet_files(made):
        data = path.read_bytes()
        assert secret.encode() not in data
        assert b"secret" not in data.lower()
        assert path.name != made.key_path.name
    manifest = (made.study_dir / "study.json").read_text()
    assert secret not in manifest
    assert not any(case in manifest for case in key.cases())


def test_orders_differ_between_readers_and_are_recorded(make_study):  # type: ignore[no-untyped-def]
    made, cfg = make_study()
    key = load_key(made.key_path)
    manifest = json.loads((made.study_dir / "study.json").read_text())
    recorded = {(p["reader"], p["session"]): tuple(p["order"]) for p in manifest["packets"]}
    for a in key.assignments:
        assert recorded[(a.reader, a.session)] == a.image_ids
        sheet_ids = [
            line.split(",")[3]
            for line in made.sheet(a.reader, a.session).read_text().splitlines()[9:]
        ]
        assert sheet_ids == list(a.image_ids)
    # alice and carol see the same set of images in session 1 (same half), in other orders
    alice = key.assignment("alice", 1).image_ids
    carol = key.assignment("carol", 1).image_ids
    assert set(alice) == set(carol) and alice != carol
    # the same seed gives the same plan; another seed a different one
    again, _ = make_study()
    assert load_key(again.key_path).assignment("alice", 1).image_ids != alice  # new secret
    from medcrypt.study import plan_sessions

    cases = list(key.cases())
    assert plan_sessions(cfg, cases) == plan_sessions(cfg, cases)
    assert plan_sessions(cfg, cases) != plan_sessions(cfg.model_copy(update={"seed": 99}), cases)


def test_counterbalanced_sessions_mix_versions_and_never_pair(make_study):  # type: ignore[no-untyped-def]
    made, _ = make_study(design="counterbalanced")
    key = load_key(made.key_path)
    for reader in ("alice", "bob", "carol"):
        s1 = [key.images[i] for i in key.assignment(reader, 1).image_ids]
        s2 = [key.images[i] for i in key.assignment(reader, 2).image_ids]
        for session in (s1, s2):
            cases = [e.case_id for e in session]
            assert len(cases) == len(set(cases)) == 10, "a session holds both versions of a case"
            versions = [e.version for e in session]
            assert 4 <= versions.count("original") <= 6
            runs = 1 + sum(a != b for a, b in itertools.pairwise(versions))
            assert runs > 2, f"{reader}: versions grouped in order {versions}"
        assert {(e.case_id, e.version) for e in s1}.isdisjoint((e.case_id, e.version) for e in s2)
    # readers alternate which half sees the original first
    a1 = {
        e.case_id
        for i in key.assignment("alice", 1).image_ids
        if (e := key.images[i]).version == "original"
    }
    b1 = {
        e.case_id
        for i in key.assignment("bob", 1).image_ids
        if (e := key.images[i]).version == "original"
    }
    assert a1.isdisjoint(b1)


def test_paper_design_puts_originals_first(make_study):  # type: ignore[no-untyped-def]
    made, _ = make_study(design="paper")
    key = load_key(made.key_path)
    for a in key.assignments:
        expected = "original" if a.session == 1 else "protected"
        assert {key.images[i].version for i in a.image_ids} == {expected}


def test_session_two_carries_not_before_date_and_instructions_come_first(make_study, helpers):  # type: ignore[no-untyped-def]
    made, cfg = make_study(washout_days=30)
    date_text = (helpers.start + dt.timedelta(days=30)).isoformat()
    html2 = (made.packet("bob", 2) / "packet.html").read_text()
    assert "Do not open or read this session before" in html2 and date_text in html2
    assert html2.index("Instructions") < html2.index("<img")
    sheet2 = made.sheet("bob", 2).read_text()
    assert f"not before {date_text}" in sheet2
    assert " | ".join(cfg.classes) in sheet2
    html1 = (made.packet("bob", 1) / "packet.html").read_text()
    assert "Do not open or read this session before" not in html1


def test_packets_are_deterministic_given_the_secret(make_study, monkeypatch):  # type: ignore[no-untyped-def]
    fixed = bytes(range(32))
    monkeypatch.setattr("medcrypt.study._create.new_secret", lambda: fixed)
    first, _ = make_study()
    second, _ = make_study()
    files_a = _packet_files(first)
    files_b = _packet_files(second)
    assert [p.relative_to(first.packets_dir) for p in files_a] == [
        p.relative_to(second.packets_dir) for p in files_b
    ]
    for a, b in zip(files_a, files_b, strict=True):
        assert a.read_bytes() == b.read_bytes(), a


def test_ordinary_compressed_png_would_leak_the_version(phantoms):  # type: ignore[no-untyped-def]
    """The premise of the fixed-size path: compressed sizes differ between the versions."""
    sizes_o = [len(p.read_bytes()) for p in sorted(phantoms.originals.glob("*.png"))]
    sizes_p = [len(p.read_bytes()) for p in sorted(phantoms.protected.glob("*.png"))]
    assert all(p > o for o, p in zip(sizes_o, sizes_p, strict=True))


def test_key_readable_by_others_is_warned_and_broken_key_hides_the_secret(
    make_study, caplog, tmp_path
):  # type: ignore[no-untyped-def]
    import logging

    from medcrypt.errors import StudyError

    made, _ = make_study()
    made.key_path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="medcrypt.study"):
        load_key(made.key_path)
    assert "readable by others" in caplog.text
    data = json.loads(made.key_path.read_text())
    data["secret_hex"] = data["secret_hex"][:-2] + "zz"[:1]  # wrong length
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(StudyError) as info:
        load_key(broken)
    assert "secret_hex" in str(info.value)
    assert data["secret_hex"] not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def _pdf_image_stream_lengths(data: bytes) -> list[int]:
    """Stream length of every image XObject, resolving indirect /Length references."""
    import re

    lengths = []
    for m in re.finditer(rb"/Subtype /Image[^>]*?/Length (\d+)( 0 R)?", data):
        if m.group(2):
            obj = re.search(rb"\n" + m.group(1) + rb" 0 obj\s*(\d+)\s*endobj", data)
            assert obj is not None
            lengths.append(int(obj.group(1)))
        else:
            lengths.append(int(m.group(1)))
    return lengths


def test_pdf_packets_are_deterministic_and_blind(make_study, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("medcrypt.study._create.new_secret", lambda: bytes(32))
    made, _ = make_study(pdf_packets=True, readers=("alice",))
    again, _ = make_study(pdf_packets=True, readers=("alice",))
    pdfs = sorted(made.packets_dir.rglob("packet.pdf"))
    assert len(pdfs) == 2
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF")
        assert (again.packets_dir / pdf.relative_to(made.packets_dir)).read_bytes() == data
        for marker in (b"CreationDate", b"ModDate", b"/ID", b"/FlateDecode"):
            assert marker not in data, marker
        lengths = _pdf_image_stream_lengths(data)
        assert len(lengths) == 10 and len(set(lengths)) == 1, lengths

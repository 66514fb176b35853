"""Ingest: every problem reported at once with sheet and line; nothing half-ingested."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from medcrypt.errors import AnswerSheetError
from medcrypt.study import ingest_sheets, load_key, read_answers

pytestmark = pytest.mark.timeout(60)

FIRST_DATA_LINE = 10  # 8 comment lines, the header on line 9


@pytest.fixture
def study(make_study, helpers):  # type: ignore[no-untyped-def]
    """A counterbalanced study whose sheets are filled with the ground truth."""
    made, _cfg = make_study()
    key = load_key(made.key_path)
    for a in key.assignments:
        helpers.fill_sheet(
            made.sheet(a.reader, a.session), {i: key.images[i].truth for i in a.image_ids}
        )
    return made, key


def _edit(path: Path, change: Callable[[list[list[str]]], None], out: Path) -> Path:
    """Apply ``change`` to the data rows (lists of cells) and write the sheet to ``out``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    head, body = lines[: FIRST_DATA_LINE - 1], lines[FIRST_DATA_LINE - 1 :]
    rows = [next(csv.reader([line])) for line in body]
    change(rows)
    out.write_text("\n".join([*head, *(",".join(r) for r in rows)]) + "\n", encoding="utf-8")
    return out


#: a day after both sessions' not-before dates, so the washout check never fires by accident
AFTER = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)


def _problems(key, sheets, answers: Path, now: dt.datetime = AFTER) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(AnswerSheetError) as info:
        ingest_sheets(key, sheets, answers, now=now)
    assert not answers.exists(), "something was ingested although validation failed"
    return info.value.problems


def test_clean_sheets_ingest_with_time_and_checksum(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study
    sheet = made.sheet("alice", 1)
    answers = tmp_path / "answers.jsonl"
    result = ingest_sheets(key, [sheet], answers)
    assert result.stored == {str(sheet): 10}
    records = read_answers(answers)
    assert len(records) == 10
    assert {r.sheet_sha256 for r in records} == {hashlib.sha256(sheet.read_bytes()).hexdigest()}
    assert all(r.ingested_at.tzinfo is not None for r in records)
    assert [r.sheet_line for r in records] == list(range(FIRST_DATA_LINE, FIRST_DATA_LINE + 10))


def test_unknown_id(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study

    def change(rows: list[list[str]]) -> None:
        rows[2][3] = "zzzz-zzzz-zzzz"

    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    problems = _problems(key, [bad], tmp_path / "answers.jsonl")
    line = FIRST_DATA_LINE + 2
    assert f"bad.csv line {line}: unknown image ID 'zzzz-zzzz-zzzz'" in "\n".join(problems)
    # the image whose row was overwritten is now missing
    lost = key.assignment("alice", 1).image_ids[2]
    assert any(f"missing answer: no row for image ID {lost!r}" in p for p in problems)


def test_diagnosis_outside_closed_list(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study

    def change(rows: list[list[str]]) -> None:
        rows[0][4] = "glioblastoma"

    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    [problem] = _problems(key, [bad], tmp_path / "answers.jsonl")
    assert problem.startswith(f"bad.csv line {FIRST_DATA_LINE}: diagnosis 'glioblastoma'")
    assert "is not in the closed list meningioma | chordoma" in problem


def test_duplicate(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study

    def change(rows: list[list[str]]) -> None:
        rows.append(list(rows[1]))

    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    [problem] = _problems(key, [bad], tmp_path / "answers.jsonl")
    iid = key.assignment("alice", 1).image_ids[1]
    assert problem == (
        f"bad.csv line {FIRST_DATA_LINE + 10}: duplicate image ID {iid!r} "
        f"(first given on line {FIRST_DATA_LINE + 1})"
    )


def test_missing_answer_and_missing_row(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study
    ids = key.assignment("alice", 1).image_ids

    def change(rows: list[list[str]]) -> None:
        rows[3][4] = " "
        del rows[5]

    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    problems = _problems(key, [bad], tmp_path / "answers.jsonl")
    assert problems == [
        f"bad.csv line {FIRST_DATA_LINE + 3}: missing answer for image ID {ids[3]!r}",
        f"bad.csv: missing answer: no row for image ID {ids[5]!r} of reader 'alice' session 1",
    ]


def test_sheet_for_the_wrong_reader(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study

    def change(rows: list[list[str]]) -> None:
        for r in rows:
            r[0] = "bob"

    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    problems = _problems(key, [bad], tmp_path / "answers.jsonl")
    assert len(problems) == 10 + 10  # every row, and then every image is unanswered
    assert problems[0] == (
        f"bad.csv line {FIRST_DATA_LINE}: the row names reader 'bob' but this sheet was issued "
        "to reader 'alice' session 1 (a sheet for the wrong reader?)"
    )


def test_sheet_for_the_wrong_session(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study
    s2 = key.assignment("alice", 2).image_ids

    def change(rows: list[list[str]]) -> None:
        rows[0][1] = "2"
        rows[1][3] = s2[0]  # an image of alice's session-2 packet

    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    problems = "\n".join(_problems(key, [bad], tmp_path / "answers.jsonl"))
    assert (
        f"bad.csv line {FIRST_DATA_LINE}: the row says session 2 but this sheet was issued for "
        "reader 'alice' session 1 (a sheet for the wrong session?)"
    ) in problems
    assert (
        f"bad.csv line {FIRST_DATA_LINE + 1}: image ID {s2[0]!r} is not in the packet of "
        "reader 'alice' session 1; it belongs to reader 'alice' session 2 (wrong session)"
    ) in problems


def test_unknown_or_missing_sheet_code_and_bad_header(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study
    text = made.sheet("alice", 1).read_text()
    code = key.assignment("alice", 1).sheet_code
    forged = tmp_path / "forged.csv"
    forged.write_text(text.replace(code, "abcdefgh"))
    no_code = tmp_path / "nocode.csv"
    no_code.write_text(text.replace(f"# sheet code: {code}\n", ""))
    header = tmp_path / "header.csv"
    header.write_text(text.replace("reader,session,position,image_id,diagnosis", "id,dx"))
    problems = _problems(key, [forged, no_code, header], tmp_path / "answers.jsonl")
    assert problems == [
        "forged.csv line 5: sheet code 'abcdefgh' was not issued by this study",
        "nocode.csv: has no '# sheet code: ...' line, so it cannot be matched to a packet",
        "header.csv line 9: expected the header reader,session,position,image_id,diagnosis, "
        "got id,dx",
    ]


def test_all_problems_of_all_sheets_at_once_and_nothing_half_ingested(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study

    def change(rows: list[list[str]]) -> None:
        rows[0][4] = "tumour"
        rows[1][4] = ""
        rows[2][3] = "0000-0000-0000"

    good = made.sheet("bob", 1)
    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    answers = tmp_path / "answers.jsonl"
    problems = _problems(key, [good, bad], answers)
    joined = "\n".join(problems)
    assert "bad.csv line 10: diagnosis 'tumour'" in joined
    assert "bad.csv line 11: missing answer" in joined
    assert "bad.csv line 12: image ID '0000-0000-0000' is not written like an image ID" in joined
    assert len(problems) == 4  # + the row lost to the unknown ID
    assert not answers.exists()
    # the message of the error lists them too
    with pytest.raises(AnswerSheetError, match=r"4 problem\(s\) in answer sheets"):
        ingest_sheets(key, [good, bad], answers)


def test_reingest_same_sheet_is_a_noop_and_a_different_sheet_is_refused(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study
    answers = tmp_path / "answers.jsonl"
    sheet = made.sheet("alice", 1)
    ingest_sheets(key, [sheet], answers)
    before = answers.read_bytes()
    again = ingest_sheets(key, [sheet], answers)
    assert again.stored == {} and again.skipped == (str(sheet),)
    assert answers.read_bytes() == before

    def change(rows: list[list[str]]) -> None:
        rows[0][4] = "chordoma" if rows[0][4] != "chordoma" else "meningioma"

    changed = _edit(sheet, change, tmp_path / "alice1-v2.csv")
    [problem] = _problems_keep(key, [changed], answers)
    assert problem == (
        "alice1-v2.csv: answers for reader 'alice' session 1 were already ingested from "
        f"{sheet.name!r}; a different sheet for them is refused"
    )
    assert answers.read_bytes() == before


def test_two_sheets_for_one_session_in_a_batch_are_refused(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study
    sheet = made.sheet("alice", 1)
    copy = _edit(sheet, lambda rows: rows.reverse(), tmp_path / "copy.csv")
    [problem] = _problems(key, [sheet, copy], tmp_path / "answers.jsonl")
    assert problem == (
        f"copy.csv: {sheet.name!r} in this batch is also for reader 'alice' session 1; "
        "give one sheet per reader and session"
    )


def test_case_and_blanks_in_diagnosis_are_normalised(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study

    def change(rows: list[list[str]]) -> None:
        rows[0][4] = f"  {rows[0][4].upper()} "

    sheet = _edit(made.sheet("alice", 1), change, tmp_path / "caps.csv")
    ingest_sheets(key, [sheet], tmp_path / "answers.jsonl")
    first = read_answers(tmp_path / "answers.jsonl")[0]
    assert first.diagnosis == key.images[first.image_id].truth


def _problems_keep(key, sheets, answers: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Like _problems, for a log that already holds earlier answers."""
    with pytest.raises(AnswerSheetError) as info:
        ingest_sheets(key, sheets, answers)
    return info.value.problems


def test_semicolon_sheets_from_spreadsheets_are_read(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study
    text = made.sheet("alice", 1).read_text()
    head, body = text.split("reader,session,position,image_id,diagnosis\n")
    semi = tmp_path / "semi.csv"
    semi.write_text(head + "reader;session;position;image_id;diagnosis\n" + body.replace(",", ";"))
    result = ingest_sheets(key, [semi], tmp_path / "answers.jsonl")
    assert result.stored == {str(semi): 10}


def test_not_utf8_sheet_is_a_problem(study, tmp_path):  # type: ignore[no-untyped-def]
    _, key = study
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("# sheet code: x\nr\u00e9ader\n".encode("latin-1"))
    [problem] = _problems(key, [bad], tmp_path / "answers.jsonl")
    assert problem == "latin1.csv: is not UTF-8 text; save the sheet as CSV (UTF-8)"


def test_session_two_before_its_date_is_refused_unless_allowed(study, tmp_path, caplog):  # type: ignore[no-untyped-def]
    """Washout (issue 12 item 3): an early session-2 sheet is refused; --allow-early is recorded."""
    import logging

    made, key = study
    not_before = key.session_dates[2]
    early = dt.datetime.combine(not_before, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=212)
    answers = tmp_path / "answers.jsonl"
    [problem] = _problems(key, [made.sheet("alice", 2)], answers, now=early)
    assert problem.startswith(
        f"answers_alice_session-2.csv: session 2 may not be read before {not_before.isoformat()}"
    )
    assert "(212 day(s) from now, the washout); refused" in problem
    assert "--allow-early" in problem

    with caplog.at_level(logging.WARNING, logger="medcrypt.study"):
        result = ingest_sheets(key, [made.sheet("alice", 2)], answers, now=early, allow_early=True)
    assert "212 day(s) early" in caplog.text
    assert result.sheets[0].early_days == 212
    records = read_answers(answers)
    assert {r.allowed_early for r in records} == {True}
    assert {r.not_before for r in records} == {not_before}
    # session 1 on its first day is on time: nothing recorded as early
    on_time = dt.datetime.combine(key.session_dates[1], dt.time(), tzinfo=dt.UTC)
    result = ingest_sheets(key, [made.sheet("bob", 1)], answers, now=on_time)
    assert result.sheets[0].early_days == 0
    assert not any(r.allowed_early for r in read_answers(answers) if r.reader == "bob")


def test_uppercase_image_id_is_normalised_not_unknown(study, tmp_path):  # type: ignore[no-untyped-def]
    """IDs are lowercase base32, so an uppercased ID is the same ID (issue 12 item 7)."""
    made, key = study

    def change(rows: list[list[str]]) -> None:
        rows[0][3] = rows[0][3].upper()
        rows[1][0] = "ALICE"

    sheet = _edit(made.sheet("alice", 1), change, tmp_path / "caps.csv")
    ingest_sheets(key, [sheet], tmp_path / "answers.jsonl")
    records = read_answers(tmp_path / "answers.jsonl")
    assert [r.image_id for r in records] == list(key.assignment("alice", 1).image_ids)


def test_session_written_as_float_gets_a_precise_message(study, tmp_path):  # type: ignore[no-untyped-def]
    made, key = study

    def change(rows: list[list[str]]) -> None:
        rows[0][1] = "1.0"
        rows[1][1] = "3"

    bad = _edit(made.sheet("alice", 1), change, tmp_path / "bad.csv")
    problems = _problems(key, [bad], tmp_path / "answers.jsonl")
    assert problems[0] == (
        f"bad.csv line {FIRST_DATA_LINE}: session '1.0' is not written as a whole number: "
        "write 1 (a spreadsheet may have reformatted the column)"
    )
    assert problems[1] == (
        f"bad.csv line {FIRST_DATA_LINE + 1}: session '3' is not a session number (1 or 2)"
    )
    assert not any("wrong reader" in p for p in problems[:2])


def test_sheet_stored_under_its_code_not_its_file_name(study, tmp_path):  # type: ignore[no-untyped-def]
    """carol's sheet saved as answers_bob_session-1.csv is carol's, and said to be."""
    made, key = study
    misnamed = tmp_path / "answers_bob_session-1.csv"
    misnamed.write_bytes(made.sheet("carol", 1).read_bytes())
    result = ingest_sheets(key, [misnamed], tmp_path / "answers.jsonl")
    [stored] = result.sheets
    assert (stored.reader, stored.session, stored.file) == ("carol", 1, str(misnamed))
    assert stored.name_mismatch is not None
    assert "file name says reader 'bob' session 1" in stored.name_mismatch
    assert "stored under reader 'carol'" in stored.name_mismatch
    assert {r.reader for r in read_answers(tmp_path / "answers.jsonl")} == {"carol"}
    # a problem in such a sheet names the reader the code says, and the file
    broken = tmp_path / "x" / "answers_bob_session-1.csv"
    broken.parent.mkdir()
    _edit(made.sheet("carol", 2), lambda rows: rows[0].__setitem__(4, "x"), broken)
    broken.rename(broken.with_name("answers_bob_session-2.csv"))
    problems = _problems(
        key, [broken.with_name("answers_bob_session-2.csv")], tmp_path / "other.jsonl"
    )
    assert problems[0].startswith(
        "answers_bob_session-2.csv (the sheet of reader 'carol' session 2, by its sheet code) "
        f"line {FIRST_DATA_LINE}:"
    )

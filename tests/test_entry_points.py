"""How operators start medcrypt: console script, ``python -m``, the ``ray submit`` script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_python_dash_m_is_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "medcrypt", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("medcrypt, version ")


@pytest.mark.timeout(120)
def test_ray_submit_script_runs_encrypt() -> None:
    script = ROOT / "scripts" / "ray_job.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    )
    assert "Usage: medcrypt encrypt" in out.stdout and "--dry-run" in out.stdout
    bad = subprocess.run(
        [sys.executable, str(script), "--source", "s3://", "--dest", "/tmp/x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "error" in bad.stderr.lower()


def _commands(cmd: click.Command, path: str) -> list[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        return [c for name, sub in cmd.commands.items() for c in _commands(sub, f"{path} {name}")]
    return [(path, cmd)]


def test_every_cli_option_says_what_it_does() -> None:
    from medcrypt.cli import main

    found = _commands(main, "medcrypt")
    assert len(found) >= 10  # the walk reached the subcommands, not just the group
    bare = [
        f"{path} {p.opts[0]}"
        for path, cmd in found
        for p in cmd.params
        if isinstance(p, click.Option) and not (p.help and p.help.strip())
    ]
    assert bare == [], f"options without --help text: {bare}"


def test_every_command_help_runs() -> None:
    from click.testing import CliRunner

    from medcrypt.cli import main

    runner = CliRunner()
    for path, _ in _commands(main, "medcrypt"):
        result = runner.invoke(main, [*path.split()[1:], "--help"])
        assert result.exit_code == 0, f"{path} --help: {result.output}"
        assert "Usage:" in result.output
        # click prints help verbatim: a "%%" written for argparse-style escaping shows as is
        assert "%%" not in result.output, f"{path} --help shows a doubled %"


def test_shared_options_have_one_declaration_and_one_help() -> None:
    from medcrypt.cli import main
    from medcrypt.cli._options import SHARED

    by_path = dict(_commands(main, "medcrypt"))
    for name, paths in SHARED.items():
        helps = {}
        for path in paths:
            cmd = by_path[f"medcrypt {path}"]
            opts = [p for p in cmd.params if isinstance(p, click.Option) and name in p.opts]
            assert len(opts) == 1, f"medcrypt {path} lacks {name}"
            helps[path] = opts[0].help
        assert len(set(helps.values())) == 1, f"{name} has several help texts: {helps}"

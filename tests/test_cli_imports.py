"""The command starts at once: ``import medcrypt.cli`` and ``medcrypt study serve`` load no
heavy engine (issue 25, item 11). Each check runs in a fresh interpreter and reads its
``sys.modules``; the commands that need torch or Ray import them when they run."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from medcrypt._lazy import reexport_table

#: what `import medcrypt.cli` (so `medcrypt --help`) must not load
CLI_FORBIDDEN = ("torch", "ray", "boto3", "botocore", "sklearn", "matplotlib", "scipy")
#: what `study serve` must not load before (and while) answering a reader
SERVE_FORBIDDEN = ("torch", "ray", "boto3", "botocore", "sklearn", "matplotlib")
#: the packages whose __init__ re-exports lazily (medcrypt/_lazy.py)
LAZY_PACKAGES = (
    "medcrypt.cluster",
    "medcrypt.processing",
    "medcrypt.processing.assessment",
    "medcrypt.processing.models",
    "medcrypt.processing.protection",
    "medcrypt.storage",
    "medcrypt.study",
)


def _loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')))


@pytest.mark.timeout(180)
def test_importing_the_cli_loads_no_engine() -> None:
    assert _loaded_after("import medcrypt.cli", CLI_FORBIDDEN) == []
    # the probe sees an engine once a command's code asks for one
    assert "torch" in _loaded_after(
        "import medcrypt.cli\nfrom medcrypt.processing import build_model", CLI_FORBIDDEN
    )


def _phantom_study(root: Path) -> Path:
    from medcrypt.medical import CLASS_NAMES, encode_png16, make_phantom_slices
    from medcrypt.study import StudyConfig, cases_from_folders, create_study

    images, labels = make_phantom_slices(1, size=32, seed=3)
    rows = ["case_id,label"]
    for side in ("originals", "protected"):
        (root / side).mkdir()
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        (root / "originals" / f"c{i}.png").write_bytes(encode_png16(img))
        (root / "protected" / f"c{i}.png").write_bytes(encode_png16(np.clip(img + 0.01, 0, 1)))
        rows.append(f"c{i},{CLASS_NAMES[int(lab)]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = StudyConfig.model_validate(
        {
            "name": "imports",
            "classes": CLASS_NAMES,
            "readers": ("r1", "r2"),
            "design": "counterbalanced",
            "seed": 5,
            "washout_days": 21,
            "start_date": dt.datetime.now(dt.UTC).date(),
            "non_inferiority_margin": 0.1,
        }
    )
    cases = cases_from_folders(
        root / "originals", root / "protected", root / "labels.csv", config.classes
    )
    create_study(config, cases, root / "study")
    return root / "study"


# The real command in a fresh interpreter; on SIGTERM (sent once it has answered; uvicorn
# shuts down, then hands the signal on to the handler it found) it writes which of the given
# modules it ever loaded.
_SERVE = """
import json, signal, sys
names, out = json.loads(sys.argv[1]), sys.argv[2]
def dump(*_):
    with open(out, "w") as fh:
        json.dump(sorted(m for m in names if m in sys.modules), fh)
    sys.exit(0)
signal.signal(signal.SIGTERM, dump)
from medcrypt.cli import main
main(sys.argv[3:], prog_name="medcrypt")
"""


@pytest.mark.timeout(240)
def test_study_serve_answers_without_loading_an_engine(tmp_path: Path) -> None:
    study = _phantom_study(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    dump = tmp_path / "modules.json"
    args = ["study", "serve", str(study), "--host", "127.0.0.1", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, json.dumps(SERVE_FORBIDDEN), str(dump), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline, status = time.monotonic() + 150, None
        while status != 200 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    status = r.status
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        assert status == 200, "study serve did not answer GET /"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert json.loads(dump.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_packages_export_what_they_list(package: str) -> None:
    """Every name in ``__all__`` is in the TYPE_CHECKING imports and resolves; an unknown
    name is an AttributeError (so ``hasattr`` and typos behave as with plain imports)."""
    module = importlib.import_module(package)
    assert module.__file__
    table = reexport_table(Path(module.__file__).read_text(encoding="utf-8"))
    assert set(table) == set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is getattr(importlib.import_module(table[name]), name)
    assert not hasattr(module, "no_such_name")
    assert set(module.__all__) <= set(dir(module))

"""The run page of a demo folder as docs/report.png (see scripts/screenshot.sh).

Usage: python scripts/_screenshot.py DEMO_OUT PNG. Headless Chromium at 1100x1280, quantised to
192 colours (the README embeds it; under 300 kB). Refuses a page that names a temp folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

TEMP_MARKS = ("medcrypt-fetch-", "pytest-of-", tempfile.gettempdir().rstrip("/") + "/")


def main(out: Path, png: Path) -> int:
    page_file = out.resolve() / "pages" / "run.html"
    if not page_file.is_file():
        print(f"{page_file}: no run page; run `medcrypt demo --out {out}` first", file=sys.stderr)
        return 1
    chromium = os.environ.get("MEDCRYPT_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        print("no chromium on PATH (scripts/test.sh installs Debian's)", file=sys.stderr)
        return 1
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1280})
            page.goto(page_file.as_uri(), wait_until="load")
            text = page.inner_text("body")
            found = [mark for mark in TEMP_MARKS if mark in text]
            if found:
                print(
                    f"the run page names a temp folder ({found}): not a screenshot to publish",
                    file=sys.stderr,
                )
                return 1
            raw = out / "run-screenshot.png"
            page.screenshot(path=str(raw))
        finally:
            browser.close()
    Image.open(raw).convert("RGB").quantize(colors=192).save(png, optimize=True)
    size = png.stat().st_size
    print(f"wrote {png} ({size // 1024} kB) from {page_file}")
    return 0 if size < 300_000 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))

"""Screenshot an energy report (report.html) with headless Chromium, to check that its charts render.

Usage: .venv/bin/python scripts/screenshot_report.py OUT/report.html [--png OUT/report.png]
       [--size 1400,3000] [--browser chromium]

Chromium is not a project dependency (Debian: `apt-get install chromium`); the script runs it
offline (no network services, throw-away profile) and checks that a non-empty PNG came out.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


def chromium_command(browser: str, html: Path, png: Path, size: str, profile_dir: Path) -> list[str]:
    """The headless Chromium command line that writes `png` from `html`."""
    return [browser, *FLAGS, f"--user-data-dir={profile_dir}", f"--screenshot={png}",
            f"--window-size={size}", html.resolve().as_uri()]


def screenshot(html: Path, png: Path, size: str = "1400,3000", browser: str = "chromium",
               timeout_s: float = 120.0) -> Path:
    """Render `html` to `png`; RuntimeError with Chromium's stderr when no PNG appears."""
    if not html.is_file():
        raise FileNotFoundError(f"{html}: no such report")
    exe = shutil.which(browser)
    if exe is None:
        raise FileNotFoundError(f"{browser}: not found (Debian: apt-get install -y chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp_png = png.with_name(f".{png.name}.tmp.png")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile_dir:
        proc = subprocess.run(chromium_command(exe, html, tmp_png, size, Path(profile_dir)),
                              capture_output=True, text=True, timeout=timeout_s)
    if not tmp_png.is_file() or tmp_png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    tmp_png.replace(png)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="report.html to render")
    parser.add_argument("--png", type=Path, help="output PNG (default: beside the report, report.png)")
    parser.add_argument("--size", default="1400,3000", help="window width,height in pixels")
    parser.add_argument("--browser", default="chromium")
    args = parser.parse_args(argv)
    png = args.png or args.html.with_suffix(".png")
    try:
        out = screenshot(args.html, png, args.size, args.browser)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot_report: error: {exc}", file=sys.stderr)
        return 2
    print(f"{out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

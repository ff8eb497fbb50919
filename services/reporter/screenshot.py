"""Opens an HTML report in headless Chromium and saves what the browser shows as a PNG: how the
HTML report is checked in a real browser (Debian: `apt-get install chromium`).

    python -m privaudit.services.reporter.screenshot report.html report.png [--width 1200] [--height 2400 | --full-page]
                                           [--palette]

`--full-page` renders in a window taller than any report and cuts the empty canvas below the page;
`--palette` writes a 256-colour PNG, about a third of the size (docs/report.png is one).

The browser runs with a throw-away profile and with its background network traffic off; the
report itself loads nothing (its Content-Security-Policy forbids it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# The window height of a full-page screenshot (taller than the example's report, about 5,000 px), and
# the canvas kept below the page once the rest is cut.
FULL_PAGE_HEIGHT = 16000
_MARGIN_BELOW = 28


class ScreenshotError(RuntimeError):
    """The browser is missing or did not produce the screenshot."""


def find_browser() -> str | None:
    """The first Chromium-family browser on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 2400, timeout: float = 60.0) -> None:
    """Renders `page` in a `width` x `height` window and writes the view to `png`."""
    browser = find_browser()
    if browser is None:
        raise ScreenshotError(f"no Chromium browser on PATH (looked for {', '.join(BROWSERS)}); "
                              "on Debian: apt-get install -y chromium")
    png = png.resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="privaudit-chromium-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"{browser} did not finish within {timeout:.0f}s") from None
    if run.returncode != 0 or not png.is_file():
        last_lines = "\n".join(run.stderr.strip().splitlines()[-5:])
        raise ScreenshotError(f"{browser} exited with status {run.returncode} and no screenshot:\n{last_lines}")


def rewrite(png: Path, trim: bool, palette: bool) -> None:
    """With `trim`, cuts the rows below the page: those at the bottom that are all the colour of the
    bottom-left pixel (the page's background), keeping a margin. With `palette`, keeps 256 colours."""
    image = Image.open(png).convert("RGB")
    if trim:
        pixels = np.asarray(image)
        content = np.flatnonzero(~np.all(pixels == pixels[-1, 0], axis=(1, 2)))
        bottom = min(int(content[-1]) + 1 + _MARGIN_BELOW, image.height) if len(content) else image.height
        image = image.crop((0, 0, image.width, bottom))
    (image.quantize(256) if palette else image).save(png, optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m privaudit.services.reporter.screenshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path, help="the HTML report")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=1200, help="window width in pixels (default 1200)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--height", type=int, default=2400, help="window height in pixels (default 2400)")
    size.add_argument("--full-page", action="store_true", help="the whole page, however long")
    parser.add_argument("--palette", action="store_true", help="a 256-colour PNG, about a third of the size")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        parser.exit(2, f"page: {args.page} is not a file\n")
    try:
        screenshot(args.page, args.png, args.width, FULL_PAGE_HEIGHT if args.full_page else args.height)
    except ScreenshotError as exc:
        parser.exit(1, f"{exc}\n")
    if args.full_page or args.palette:
        rewrite(args.png, trim=args.full_page, palette=args.palette)
    print(f"screenshot written to {args.png}")


if __name__ == "__main__":
    main()

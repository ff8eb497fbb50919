"""The HTML report in a real browser: headless Chromium renders it, styles and inline figures
included. Skipped where no Chromium is installed (Debian: apt-get install -y chromium)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_reporter_fixtures import failed, make_report, succeeded

from privaudit.services.attack_worker import metrics
from privaudit.services.attack_worker.attacks.base import Scores
from privaudit.services.reporter import render_html
from privaudit.services.reporter.plots import ATTACK_COLOURS
from privaudit.services.reporter.screenshot import FULL_PAGE_HEIGHT, find_browser, screenshot
from privaudit.v1 import results_pb2

pytestmark = pytest.mark.skipif(find_browser() is None,
                                reason="no Chromium on PATH to open the HTML report; apt-get install -y chromium")

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1200, 2400
HIGH_RED = (0xB9, 0x1C, 0x1C)  # --high in the template: the summary card's top border and the level
WARNING_BG = (0xFE, 0xF3, 0xC7)  # --middle-bg: the MIDDLE badges and the warnings box


def _pixels_near(png: Path, colour: str | tuple[int, int, int], tolerance: int = 24) -> int:
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    target = colour if isinstance(colour, tuple) else tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return int((np.abs(rgb - np.array(target)).max(axis=2) <= tolerance).sum())


def _measured(index: int, name: str, separation: float, seed: int) -> results_pb2.AttackResult:
    """A succeeded attack whose measurements the worker's metrics computed from normal scores."""
    rng = np.random.default_rng(seed)
    scores = Scores(rng.normal(0.5 + separation, 0.15, 400), rng.normal(0.5, 0.15, 400), threshold=0.5)
    result = succeeded(index, name, separation=None)
    for field in ("metrics", "roc", "most_exposed", "score_histogram"):
        result.ClearField(field)
    result.MergeFrom(metrics.to_proto(metrics.evaluate(scores, seed)))
    return result


def test_chromium_shows_the_styled_page_and_its_inline_figures(tmp_path: Path) -> None:
    html = render_html.render(make_report(_measured(0, "ML-LEAK", 0.12, seed=1),
                                          _measured(1, "LABEL-ONLY", 0.05, seed=2), failed(2))).decode()
    page, bare = tmp_path / "report.html", tmp_path / "without_figures.html"
    page.write_text(html)
    bare.write_text(re.sub(r'src="data:[^"]*"', 'src=""', html))
    shot, bare_shot = tmp_path / "report.png", tmp_path / "without_figures.png"
    screenshot(page, shot, WIDTH, HEIGHT)
    screenshot(bare, bare_shot, WIDTH, HEIGHT)

    assert Image.open(shot).size == (WIDTH, HEIGHT)
    assert _pixels_near(shot, HIGH_RED) > 2000, "the stylesheet did not apply: no red HIGH summary card"
    # The first attack's colour is on its swatches either way; its ROC curve and the histogram's
    # non-member outline add over a thousand pixels, but only when Chromium shows the data: images.
    with_figures, without = _pixels_near(shot, ATTACK_COLOURS[0]), _pixels_near(bare_shot, ATTACK_COLOURS[0])
    assert with_figures - without > 1000, f"figures not shown: {with_figures} vs {without} pixels"


def test_chromium_shows_an_attacks_warnings(tmp_path: Path) -> None:
    """The warnings box is the one large area of the MIDDLE background on a page without MIDDLE
    ratings: with a warning, thousands of its pixels appear."""
    quiet = _measured(0, "ML-LEAK", 0.3, seed=1)
    warned = _measured(0, "ML-LEAK", 0.3, seed=1)
    warned.warnings.append("the attack classifier stopped before it converged; raise classifier_epoch")
    counts = []
    for name, result in (("quiet", quiet), ("warned", warned)):
        page, shot = tmp_path / f"{name}.html", tmp_path / f"{name}.png"
        page.write_text(render_html.render(make_report(result)).decode())
        screenshot(page, shot, WIDTH, HEIGHT)
        counts.append(_pixels_near(shot, WARNING_BG, tolerance=4))
    assert counts[1] - counts[0] > 5000, f"no warnings box: {counts} pixels"


@pytest.mark.e2e
def test_the_examples_report_screenshotted_whole_as_readme_says(tmp_path: Path) -> None:
    """`main.py --format html` on the example, then the screenshot command README gives for
    docs/report.png: a long page, cut below its end, with the styles, the three attacks' curves
    and histograms drawn (the same page without its images has far fewer of their pixels)."""
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    completed = subprocess.run([sys.executable, "main.py", "example/tasks/mem_inf.yaml", "--format", "html",
                                "--output", str(page), "--quiet"], cwd=REPO, capture_output=True, text=True,
                               timeout=900)
    assert completed.returncode == 0, completed.stderr
    shooting = subprocess.run([sys.executable, "-m", "privaudit.services.reporter.screenshot", str(page), str(shot),
                               "--full-page"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert shooting.returncode == 0, shooting.stderr
    width, height = Image.open(shot).size
    assert width == 1200 and 3000 < height < FULL_PAGE_HEIGHT, (width, height)
    colours = np.unique(np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 2000, f"a near-blank page: {len(colours)} colours"
    assert _pixels_near(shot, HIGH_RED) > 2000, "the stylesheet did not apply: no red HIGH summary card"
    bare, bare_shot = tmp_path / "bare.html", tmp_path / "bare.png"
    bare.write_text(re.sub(r'src="data:[^"]*"', 'src=""', page.read_text()))
    screenshot(bare, bare_shot, WIDTH, height)
    for colour in ATTACK_COLOURS[:3]:
        drawn, swatches = _pixels_near(shot, colour), _pixels_near(bare_shot, colour)
        assert drawn - swatches > 1000, f"{colour}: {drawn} pixels with the figures, {swatches} without"

"""The HTML report: its content, that it is self-contained, that user strings are escaped,
that its figures are real PNGs, and that reruns are byte-identical."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
from test_reporter_fixtures import class_metrics, failed, make_report, succeeded

from privaudit.services.reporter import render_html, render_json
from privaudit.services.reporter.compare import compare
from privaudit.services.reporter.epsilon_terms import ASSUMPTION
from privaudit.services.reporter.report import NO_RECORD_SCORES
from privaudit.v1 import results_pb2

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = '<script>alert("x")</script>'


class _Page(HTMLParser):
    """Every tag with its attributes, and the visible text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def attribute(self, name: str) -> list[str]:
        return [attrs[name] or "" for _, attrs in self.tags if name in attrs]

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


WARNING = "shadow models trained on 200 records, fewer than the target's 400"


def _mixed():
    return [succeeded(0, auc=0.6, train_acc=1.0, test_acc=0.8, separation=1.0,
                      per_class=(class_metrics(4, 480, 520, 0.64, 0.07), class_metrics(7, 520, 480, 0.57))),
            failed(1),
            succeeded(2, "ML-LEAK", auc=0.7, tpr_01=None, non_members=500, auc_p=3e-12, tpr_1_p=0.2,
                      separation=None, warnings=(WARNING,))]


def _html(*results, task_id: str = "task-1") -> str:
    return render_html.render(make_report(*results, task_id=task_id)).decode()


def test_the_page_has_the_summary_a_section_per_attack_and_the_advice() -> None:
    page = _Page(_html(*_mixed()))
    text = page.visible
    assert "Overall risk HIGH" in text
    assert "The model leaks membership to" in text
    assert "Empirical ε estimate: ε ≥ " in text
    assert f"A lower bound on the epsilon of any differentially private training of this model only if {ASSUMPTION}; " \
           "otherwise an estimate." in text
    for index in (0, 1, 2):
        assert f'attack-{index}' in page.attribute("id")
    assert "Failed (INVALID_ARGUMENT) at attacks[1].args.shadow_model" in text
    assert "the folder has no .py file; add one defining get_model()" in text
    assert "TPR@0.1%FPR n/a needs >= 1000 non-members, had 500" in text
    for title in ("What to do", "Differential privacy (DP-SGD)", "Why here:", "Models", "Datasets",
                  "How risk is rated", "Most exposed members"):
        assert title in text
    assert "#0 1 #7 0.9844" in text


def test_the_new_figures_appear_for_each_attack() -> None:
    """Intervals, chance p-values and their level, the threshold's source, warnings, the per-class
    table and the epsilon estimate or why there is none."""
    text = _Page(_html(*_mixed())).visible
    assert "AUC 0.7000 [0.6600, 0.7400] chance p = 3e-12" in text
    assert "TPR@1%FPR 0.0100 [0.0000, 0.0500] chance p = 0.2" in text
    assert "Beyond chance at p ≤ 0.025" in text and "Beyond chance at p ≤ 0.0167" in text
    assert "Decision threshold 0.5 shadow model's members and non-members" in text
    assert f"Warning {WARNING}" in text
    assert ("Label Members Non-members AUC [95% interval] TPR@1%FPR 4 480 520 0.6400 [0.6000, 0.6800] 0.0700 "
            "7 520 480 0.5700 [0.5300, 0.6100] n/a") in text
    assert f"Empirical ε estimate None: {NO_RECORD_SCORES}." in text
    assert f"A lower bound on the training's epsilon only if {ASSUMPTION}; otherwise an estimate." in text
    assert "beyond chance: its chance p-value" in text  # the rule, under "How risk is rated"


def test_figures_are_inline_pngs_one_roc_and_one_histogram_per_succeeded_attack() -> None:
    page = _Page(_html(*_mixed()))
    sources = page.attribute("src")
    assert len(sources) == 3
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.removeprefix("data:image/png;base64,")).startswith(PNG_MAGIC)
    alts = page.attribute("alt")
    assert sum("ROC curves" in alt for alt in alts) == 1 and sum("Histogram" in alt for alt in alts) == 2


def test_the_page_loads_nothing_from_anywhere() -> None:
    html = _html(*_mixed())
    page = _Page(html)
    assert all(href.startswith("#") for href in page.attribute("href"))
    assert all(source.startswith("data:") for source in page.attribute("src"))
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.IGNORECASE)
    assert not re.search(r"url\(|@import|<link|<script|<iframe|<object|<embed", html, re.IGNORECASE)
    (policy,) = [attrs["content"] for tag, attrs in page.tags if attrs.get("http-equiv") == "Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; img-src data:;")


def test_user_supplied_strings_are_escaped() -> None:
    attack = succeeded(0, model=EVIL, auc=0.7)
    attack.target_model.path = f"models/{EVIL}"
    attack.datasets[0].name = EVIL
    broken = failed(1, field=f"attacks[1].args.{EVIL}", message=f"cannot read {EVIL} & stopped")
    html = _html(attack, broken, task_id=EVIL)
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 6
    assert "cannot read &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; stopped" in html
    assert EVIL in _Page(html).visible  # shown as the text it is


def test_attack_names_with_markup_or_dollars_are_drawn_and_escaped() -> None:
    """An attack this reporter does not know keeps its name: `$` must not start matplotlib mathtext."""
    html = _html(succeeded(0, "NEW-$ATTACK<b>", auc=0.6))
    assert "NEW-$ATTACK&lt;b&gt; (attacks[0])" in html and "<b>" not in html


def test_only_failed_attacks_give_a_page_without_figures() -> None:
    page = _Page(_html(failed(0), failed(1, "LABEL-ONLY")))
    assert page.attribute("src") == []
    assert "Overall risk NOT RATED" in page.visible
    assert "No attack completed" in page.visible


def test_an_attack_without_histogram_or_exposed_records_still_renders() -> None:
    """An older worker's result: neither the worker's histogram nor record scores to bin; its ROC
    is the worker's thinned curve, and the caption says so."""
    attack = succeeded(0, auc=0.6, exposed=0, separation=None)
    attack.ClearField("score_histogram")
    page = _Page(_html(attack, succeeded(1, "ML-LEAK", exposed=0)))
    assert len(page.attribute("src")) == 2  # the ROC, ML-LEAK's histogram
    assert "Most exposed members" not in page.visible
    assert "The results of BASELINE (attacks[0]) carry no record scores (an older worker)" in page.visible


def test_reruns_are_byte_identical() -> None:
    assert _html(*_mixed()) == _html(*reversed(_mixed()))


@pytest.mark.parametrize("risk", ["HIGH", "MIDDLE", "LOW"])
def test_the_summary_card_takes_the_overall_level(risk: str) -> None:
    auc = {"HIGH": 0.7, "MIDDLE": 0.6, "LOW": 0.5}[risk]
    page = _Page(_html(succeeded(0, "ML-LEAK", auc=auc)))
    (summary,) = [attrs for tag, attrs in page.tags if attrs.get("aria-label") == "Summary"]
    assert summary["class"] == f"card summary level-{risk.lower()}"
    assert f"Overall risk {risk}" in page.visible


def test_tied_most_exposed_members_are_one_item_saying_how_many_share_the_score() -> None:
    attack = succeeded(0, exposed=0)
    members = np.zeros(len(attack.record_scores.members))
    members[[3, 5, 8]] = 1.0
    members[9] = 0.75
    attack.record_scores.members[:] = members
    attack.most_exposed.extend(results_pb2.ExposedRecord(index=i, score=members[i]) for i in (3, 5, 8, 9))
    page = _Page(_html(attack))
    assert "3 members share the score 1 #3 #5 #8 #9 0.75" in page.visible
    assert [attrs.get("class") for tag, attrs in page.tags if tag == "li" and "tie" in (attrs.get("class") or "")] \
        == ["tie"]


def test_a_negated_loss_near_zero_prints_with_its_digits() -> None:
    attack = succeeded(0, "LOSS", exposed=0)
    attack.most_exposed.extend(results_pb2.ExposedRecord(index=i, score=s) for i, s in enumerate([-9e-09, -1e-06]))
    text = _Page(_html(attack)).visible
    assert "#0 -9e-09 #1 -1e-06" in text and "-0.0000" not in text


def test_a_dataset_in_two_roles_is_one_row_with_both() -> None:
    shadow = succeeded(1, "LABEL-ONLY")
    shadow.datasets.append(results_pb2.DatasetSummary(name="digits_train", path="datasets/digits_train",
                                                      is_member_dataset=False, length=900, role="shadow",
                                                      digest="train-digest"))
    text = _Page(_html(succeeded(0), shadow)).visible
    datasets = text[text.index("Datasets Name Folder"):text.index("How risk is rated")]
    assert "digits_train datasets/digits_train yes 900 target, shadow" in datasets
    assert datasets.count("datasets/digits_train") == 1


def test_the_provenance_section_names_every_digest_or_says_it_is_not_known() -> None:
    attack = succeeded(0)
    attack.datasets[1].digest = ""
    attack.device = "gpu:0"
    text = _Page(_html(attack)).visible
    provenance = text[text.index("Provenance privaudit version"):]
    assert "Generated at 2026-11-30T00:53:20Z Seed 7" in provenance
    assert f"Task digest {'5' * 64} Worker devices gpu:0" in provenance
    assert "Model digits_mlp models/digits_mlp digits_mlp-digest" in provenance
    assert "Dataset digits_train datasets/digits_train train-digest" in provenance
    assert "Dataset digits_test datasets/digits_test digest not known" in provenance


def test_a_comparison_section_only_with_a_baseline() -> None:
    old = make_report(succeeded(0, auc=0.7), succeeded(1, "ML-LEAK", auc=0.6), task_id="old")
    new = make_report(succeeded(0, auc=0.52), succeeded(1, "ML-LEAK", auc=0.75), task_id="new")
    assert "Compared with the baseline" not in _Page(render_html.render(new).decode()).visible
    compared = replace(new, comparison=compare(render_json.audit_report(old), render_json.audit_report(new)))
    text = _Page(render_html.render(compared).decode()).visible
    section = text[text.index("Compared with the baseline"):text.index("Attacks at a glance")]
    assert section.startswith("Compared with the baseline REGRESSED Baseline task old ")  # a <code> ends at "old"
    assert ", built 2026-11-30T00:53:20Z." in section
    assert "BASELINE (attacks[0]) 0.7000 → 0.5200 -0.1800, better 0.0100 → 0.0100 +0.0000, unchanged HIGH → LOW " \
           "no regression" in section
    assert "ML-LEAK (attacks[1]) 0.6000 → 0.7500 +0.1500, worse" in section and "MIDDLE → HIGH regressed" in section
    assert "Beyond noise: z = " in section

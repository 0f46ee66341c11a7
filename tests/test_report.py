"""Reports: data is escaped, plots are embedded, and a real browser shows what a reader needs."""

from __future__ import annotations

import re
import shutil

import pytest

from embedforensics.cli import main

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'> & \"q\""


@pytest.fixture
def report_dir(write_recipe, tmp_path):
    texts = ["the cat sat on the mat " + HOSTILE, *[f"the dog {w}" for w in
                                                    ("sat", "ran", "is red", "sang", "flew")]]
    path = write_recipe({
        "name": "hostile-report",
        "description": "A study whose data contains <b>markup</b>.",
        "confounds": ["Length differs <i>a lot</i>."],
        "sources": [{"id": "evil<src>", "label": "ani<mals>", "texts": texts},
                    {"label": "finance", "texts": ["the stock market fell", "the bank rate rose",
                                                   "stock price fell", "market rose",
                                                   "bank stock rose", "prices fell"]}],
        "probes": ["pca", {"name": "linear", "n_folds": 2}, {"name": "cluster"}],
    })
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "-q"]) == 0
    return tmp_path / "out"


def test_html_escapes_everything_from_data(report_dir):
    html = (report_dir / "report.html").read_text()
    assert "<script" not in html.lower()          # no script at all, not even ours
    assert "onerror=" not in html.replace("onerror=&#x27;", "")
    assert "&lt;script&gt;" in html and "ani&lt;mals&gt;" in html
    assert "&lt;b&gt;markup&lt;/b&gt;" in html and "&lt;i&gt;a lot&lt;/i&gt;" in html
    # self-contained: every image is inline, nothing is fetched
    assert not re.search(r"""src=['"](?!data:)""", html)
    assert len(re.findall(r"src='data:image/png;base64,", html)) >= 3


def test_markdown_report_has_findings_and_tables(report_dir):
    md = (report_dir / "report.md").read_text()
    assert md.startswith("# hostile-report")
    assert "**Finding.**" in md and "## Probe 2: linear" in md
    assert "| metric | value | method |" in md
    assert "&lt;script>" in md and "<script>" not in md
    for line in re.findall(r"!\[.*?\]\((plots/.*?\.png)\)", md):
        assert (report_dir / line).is_file()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None or shutil.which("chromedriver") is None,
                    reason="headless Chromium + chromedriver not installed "
                           "(scripts/setup.sh --test installs them on Debian)")
def test_report_in_a_real_headless_browser(report_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1200,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get((report_dir / "report.html").resolve().as_uri())
        # the detail sections are folded (<details>); a reader opens them to read the tables
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
        body = driver.find_element(By.TAG_NAME, "body").text
        # what a reader sees: the title, the finding with numbers, the caveats, the data
        assert driver.title.startswith("hostile-report")
        verdict = driver.find_element(By.ID, "verdict").text
        assert "linear probe" in verdict and "accuracy" in verdict and "CI" in verdict
        assert "Length differs <i>a lot</i>." in driver.find_element(By.ID, "confounds").text
        assert "ani<mals>" in body and "<script>window.__pwned = 1</script>" in body
        # the hostile markup was shown as text, never run
        assert driver.execute_script("return window.__pwned === undefined")
        # every plot decoded into a real image
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 3
        for img in images:
            assert driver.execute_script("return arguments[0].naturalWidth", img) > 100
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert headings[:1] == ["Data"] and "Provenance" in headings
        assert any(h.startswith("Probe 2: linear") for h in headings)
    finally:
        driver.quit()


def test_verdict_with_a_layer_sweep_names_the_layer_and_keeps_one_headline_per_probe():
    from types import SimpleNamespace as P

    from embedforensics.report.format import verdict

    probes = [P(probe="linear", layer="-1", summary="deep 90%.", error=None),
              P(probe="linear", layer="2", summary="shallow 60%.", error=None),
              P(probe="lda", layer="2", summary=None, error="too few rows"),
              P(probe="layer_sweep", layer=None, summary="linear peaks at layer -1.",
                error=None)]
    text = verdict(P(probes=probes))
    assert text.startswith("At layer -1 (the first of model.layers): deep 90%.")
    assert "shallow 60%" not in text and "linear peaks at layer -1." in text
    assert text.endswith("Failed probes: lda (layer 2).")
    flat = verdict(P(probes=[P(probe="pca", layer=None, summary="PC1.", error=None)]))
    assert flat == "PC1."


def test_metric_text_shows_a_metrics_own_reading():
    from embedforensics.report.format import metric_text
    from embedforensics.results import Metric

    floor = Metric(value=0.01, n=800, display="p ≤ 0.01 (floor with 99 permutations)")
    assert metric_text(floor) == "p ≤ 0.01 (floor with 99 permutations) (n=800)"
    assert metric_text(Metric(value=0.5, n=8)) == "0.500 (n=8)"

"""The report's first screen as a reader sees it (issue 21): headless Chromium at 1280×800
shows the question, the verdict (strongest caveat first), the caveats and the summary
table before any scrolling; everything else is folded into <details> sections listed in a
table of contents; the compare report's wide tables never widen the page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from embedforensics.cli import main

VIEW = (1280, 800)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")


needs_browser = pytest.mark.skipif(
    _chromium() is None or shutil.which("chromedriver") is None,
    reason="headless Chromium + chromedriver not installed (scripts/setup.sh --test)")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--hide-scrollbars",
                 f"--window-size={VIEW[0]},{VIEW[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.set_window_size(*VIEW)
        yield driver
    finally:
        driver.quit()


def _on_first_screen(driver, element_id: str) -> bool:
    """The element is displayed and starts above the bottom of the first screen."""
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, element_id)
    top = driver.execute_script("return arguments[0].getBoundingClientRect().top", element)
    height = driver.execute_script("return window.innerHeight")
    return element.is_displayed() and 0 <= top < height


def _open_all(driver) -> None:
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")


def _check_first_screen(driver, report: Path, shots: Path, name: str) -> str:
    from selenium.webdriver.common.by import By

    driver.get(report.resolve().as_uri())
    driver.save_screenshot(str(shots / f"{name}-first-screen.png"))
    for element_id in ("verdict", "summary"):
        assert _on_first_screen(driver, element_id), element_id
    verdict = driver.find_element(By.ID, "verdict").text
    # folded sections: headings visible, contents not; a table of contents links them
    sections = driver.find_elements(By.CSS_SELECTOR, "details.section")
    assert sections and not any(s.get_attribute("open") for s in sections[1:])
    links = [a.get_attribute("href").rsplit("#", 1)[1]
             for a in driver.find_elements(By.CSS_SELECTOR, "#toc a")]
    assert links == [s.get_attribute("id") for s in sections]
    assert "Provenance" in [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
    # the page never scrolls sideways at 1280 px; wide tables scroll inside their box
    assert driver.execute_script("return document.documentElement.scrollWidth") <= VIEW[0]
    _open_all(driver)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= VIEW[0]
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(VIEW[0], min(height + 100, 16000))
    driver.save_screenshot(str(shots / f"{name}-open.png"))
    driver.set_window_size(*VIEW)
    return verdict


@pytest.mark.browser
@needs_browser
def test_run_report_first_screen(write_recipe, tmp_path, browser):
    from selenium.webdriver.common.by import By

    hostile = "<script>window.__pwned = 1</script> & <b>x</b>"
    path = write_recipe({
        "name": "first-screen", "description": "Can a tiny model tell animals from finance?",
        "confounds": ["Topic: the <i>finance</i> texts are about money."],
        "sources": [{"label": "animals", "texts": [
            "the cat sat on the mat " + hostile, *[f"the dog {w}" for w in (
                "sat", "ran", "is red", "sang", "flew", "sat on the mat", "was blue",
                "and the cat", "by the river")]]},
            {"label": "finance", "texts": [
                "the stock market fell", "the bank rate rose", "stock price fell",
                "market rose", "bank stock rose", "prices fell", "the rate fell",
                "the price rose by day", "bank and market", "stock and bank"]}],
        "probes": ["pca", {"name": "lda", "n_folds": 2}, "cluster"]})
    out = tmp_path / "out"
    assert main(["run", str(path), "-o", str(out), "-q"]) == 0
    verdict = _check_first_screen(browser, out / "report.html", tmp_path, "run")
    # the strongest caveat leads: the tiny tokenizer does not know the markup's
    # characters (a few percent [UNK]), then the small sample (10 rows a label)
    assert verdict.startswith("Finding. Caveat first: Tokenizer: ")
    assert "discriminant analysis" in verdict and "accuracy" in verdict
    assert _on_first_screen(browser, "confounds")
    caveats = browser.find_element(By.ID, "confounds").text
    assert "Small sample: label" in caveats
    assert "Topic: the <i>finance</i> texts are about money." in caveats
    rows = browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["pca", "lda",
                                                                          "cluster"]
    # opened, every section shows data as text and runs none of it
    _open_all(browser)
    assert hostile in browser.find_element(By.TAG_NAME, "body").text
    assert browser.execute_script("return window.__pwned === undefined")
    for img in browser.find_elements(By.TAG_NAME, "img"):
        assert browser.execute_script("return arguments[0].naturalWidth", img) > 100


@pytest.mark.browser
@needs_browser
def test_compare_report_first_screen(write_recipe, tmp_path, browser):
    from selenium.webdriver.common.by import By

    from tests.compare.test_workflow import _recipe

    recipe = _recipe(write_recipe, tmp_path)
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    out = tmp_path / "cmp"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    _check_first_screen(browser, out / "report.html", tmp_path, "compare")
    rows = browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
    assert {r.find_elements(By.TAG_NAME, "td")[0].text for r in rows} == {"compare-same",
                                                                          "compare-noisy"}
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert any(h.startswith("Comparison 1: compare-") for h in headings)
    verdict = browser.find_element(By.ID, "verdict").text
    assert "same: median" in verdict and "noisy: median" in verdict
    # the candidate table fits the page at 1280 px (no column cut), like every other box
    _open_all(browser)
    for table in browser.find_elements(By.CSS_SELECTOR, "table.wide"):
        box = table.find_element(By.XPATH, "..")
        assert browser.execute_script("return arguments[0].scrollWidth", table) <= \
            browser.execute_script("return arguments[0].clientWidth", box) + 1
    for box in browser.find_elements(By.CSS_SELECTOR, "div.scroll"):
        right = browser.execute_script("return arguments[0].getBoundingClientRect().right",
                                       box)
        assert right <= VIEW[0]

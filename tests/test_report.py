"""Tests of the HTML run report and the model card (pipeline/ops/report.py, model_card.py).

Unit tests render pages from hand-made `ReportData`; the end-to-end tests reuse
the session's `pushed_pipeline` run (no run of their own): the page its runner
wrote, `tfxt report --run-id`, the model card in the pushed version, and the
page opened in a real headless Chromium (Debian's package, driven by Selenium
through the system chromedriver, never a downloaded one).
"""

import datetime
import os
import re
import shutil

import pytest
from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2

from pipeline import mlmd
from pipeline.config import ConfigError, load_config
from pipeline.ops import report, report_data, tracking
from pipeline.ops.summary import ACCURACY, RunSummary, summarize

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


def _node(node_id, state="COMPLETE"):
    return mlmd.NodeExecution(node_id, state, 1.5, metadata_store_pb2.Execution(), {})


def _data(nodes, **fields):
    run = tracking.TrackedRun(
        run_id="2026-01-01T00:00:00.000001",
        started=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        state="FAILED", config=None, config_fingerprint="abc123", spans=[1, 2], hyperparameters={},
        metrics={}, blessed=None, pushed_version=None, model_id=None, cached_nodes=[], nodes=nodes)
    summary = RunSummary(run.run_id, nodes, [], {}, None, [], None, None)
    return report_data.ReportData("penguin", run, summary, **fields)


def _section_ids(html):
    return re.findall(r'<section id="([a-z]+)">', html)


def test_a_run_stopped_early_shows_only_what_exists():
    html = report.render(_data([_node("RunRecord"), _node("CsvExampleGen", "FAILED")]))
    assert _section_ids(html) == ["run"]
    assert "Not finished: CsvExampleGen" in html
    assert "<script" not in html and "http://cdn" not in html


def test_sections_appear_when_their_data_does():
    from pipeline.components.drift_gate import Drift
    from pipeline.ops.monitoring import DriftResult

    drift = DriftResult("r", 2009, 2008, "warn", [Drift("island", "L_INFINITY", 0.31, 0.1),
                                                   Drift("body_mass_g", "JSD", 0.01, 0.05)])
    html = report.render(_data([_node("ExampleValidator")], drift=drift))
    assert _section_ids(html) == ["run", "drift"]
    assert "span 2009 against span 2008" in html and "Drift in island (action: warn)" in html
    assert "0.3100" in html and "body_mass_g" in html


def test_rolled_back_versions_are_the_pushes_newer_than_stable():
    def point(version, new_push=True):
        return report_data.HistoryPoint("r" + version, "2026-01-01 00:00:00", [], 0.9, True, version,
                                        new_push)

    points = [point("100"), point("200"), point("200", new_push=False), point("300")]
    assert report.rolled_back_versions(points, 100) == ["200", "300"]
    assert report.rolled_back_versions(points, 300) == []
    assert report.rolled_back_versions(points, None) == []


def test_values_are_escaped():
    data = _data([_node("<script>alert(1)</script>")])
    assert "<script>alert(1)" not in report.render(data)


def test_config_refuses_an_empty_intended_use():
    with pytest.raises(ConfigError, match="report.intended_use"):
        load_config(overrides={"report": {"intended_use": "  "}})


def test_a_report_failure_is_one_line_and_never_raises(tmp_path):
    import io

    config = load_config(overrides={"output_dir": str(tmp_path / "outputs")})
    stream = io.StringIO()
    assert report.report_after_run(config, stream) is None
    assert stream.getvalue().startswith("Report: not written (RunNotFoundError: No runs of 'penguin'")
    assert stream.getvalue().count("\n") == 1


def test_tensorboard_starts_with_the_locked_setuptools():
    # `tensorboard --logdir` (linked from the report) imports this module first; it needs
    # pkg_resources, which setuptools 81 removed (requirements.in pins setuptools<81).
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = importlib.import_module("tensorboard.default")
    assert default.get_plugins()


@pytest.fixture(scope="module")
def pushed_run_id(pushed_pipeline):
    # Other test modules may add runs to the same store later; the first run is the pushed one.
    return mlmd.run_ids(mlmd.open_store(pushed_pipeline.config), "penguin")[0]


@pytest.mark.e2e
def test_every_run_writes_its_report(pushed_pipeline, pushed_run_id):
    path = os.path.join(report.report_dir(pushed_pipeline.config, pushed_run_id), report.REPORT_FILE)
    assert f"Report: {path}" in pushed_pipeline.output
    with open(path) as f:
        html = f.read()
    # The bundled data has three spans, so the run checks drift and decay between the newest two.
    assert _section_ids(html) == ["run", "data", "drift", "model", "history", "edge", "serving"]


@pytest.fixture(scope="module")
def regenerated_report(pushed_pipeline, pushed_run_id):
    """`tfxt report --run-id` for the pushed run: the page the browser test opens."""
    from runners.cli.main import main

    result = CliRunner().invoke(main, ["report", "--run-id", pushed_run_id, "--config",
                                       pushed_pipeline.config_path])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


@pytest.mark.e2e
def test_tfxt_report_names_an_unknown_run(pushed_pipeline):
    from runners.cli.main import main

    result = CliRunner().invoke(main, ["report", "--run-id", "no-such-run", "--config",
                                       pushed_pipeline.config_path])
    assert result.exit_code == 1
    assert "No run 'no-such-run' of 'penguin'" in result.output and "Traceback" not in result.output


@pytest.mark.e2e
def test_model_card_travels_with_the_pushed_version_and_keeps_push_dedup(pushed_pipeline, pushed_run_id,
                                                                        regenerated_report):
    from pipeline.components.pusher import find_serving_version

    config = pushed_pipeline.config
    summary = summarize(config, pushed_run_id)
    assets = os.path.join(summary.pushed_path, "assets.extra")
    with open(os.path.join(assets, "model_card.md")) as f:
        card = f.read()
    assert f"version {summary.pushed_version}" in card and pushed_run_id in card
    overall = summary.metrics["Overall"]
    assert f"| Overall | {overall[ACCURACY]:.3f} | {overall['example_count']:.0f} |" in card
    assert config.report.intended_use in card and config.report.limitations[0] in card
    assert os.path.isfile(os.path.join(assets, "model_card.html"))
    assert os.path.isfile(os.path.join(os.path.dirname(regenerated_report), "model_card.md"))
    # The card is in assets.extra, which the Pusher's duplicate check does not hash: the trained
    # model is still recognised as the version already served.
    from tfx.utils import path_utils

    trainer_model = path_utils.serving_model_path(summary.node("Trainer").outputs["model"][0].uri)
    assert find_serving_version(config.serving_model_dir, trainer_model) == summary.pushed_version


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("needs Debian's chromium and chromium-driver: sudo bash .ci/install-system-deps")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    # The browser and driver paths are given, and Selenium Manager must never download one.
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
                                  "--window-size=1280,1100"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.mark.e2e
def test_report_page_in_a_real_browser(pushed_pipeline, pushed_run_id, regenerated_report, browser, tmp_path):
    config = pushed_pipeline.config
    summary = summarize(config, pushed_run_id)
    assert os.path.getsize(regenerated_report) < 3 * 1024 * 1024
    browser.get("file://" + regenerated_report)
    assert browser.title == f"penguin run {pushed_run_id}"
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
    _assert_nothing_leaves_the_machine(browser)
    _assert_plots_render(browser, summary, config)
    _assert_numbers_match_ml_metadata(browser, summary)
    _save_screenshot(browser, tmp_path)


def _assert_nothing_leaves_the_machine(browser):
    fetched = browser.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map(e => e.name)"
        ".concat([...document.querySelectorAll('[src], link[href]')].map(e => e.src || e.href));")
    assert fetched, "the navigation itself is an entry"
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched


def _figure(browser, kind):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, f'figure[data-plot="{kind}"]')


def _assert_plots_render(browser, summary, config):
    from selenium.webdriver.common.by import By

    figures = browser.find_elements(By.CSS_SELECTOR, "figure.plot svg")
    assert figures
    for svg in figures:
        box = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                     "return [r.width, r.height];", svg)
        assert box[0] > 100 and box[1] > 50, box
    classes = summary.class_names
    (confusion,) = _figure(browser, "confusion")
    assert len(confusion.find_elements(By.CSS_SELECTOR, '[id^="cm-cell-"]')) == len(classes) ** 2
    labels = [t.text for t in confusion.find_elements(By.TAG_NAME, "text")]
    counts = [float(label) for label in labels if label.isdigit()]
    assert len(counts) == len(classes) ** 2
    assert sum(counts) == summary.metrics["Overall"]["example_count"]
    assert set(classes) <= set(labels)
    (slices,) = _figure(browser, "slices")
    assert len(slices.find_elements(By.CSS_SELECTOR, '[id^="slice-bar-"]')) == len(summary.metrics)
    history = tracking.list_runs(config)
    (plot,) = _figure(browser, "history")
    assert len(plot.find_elements(By.CSS_SELECTOR, '[id^="history-point-"]')) == sum(
        ACCURACY in run.metrics for run in history)
    features = report_data.collect(config, summary.run_id).statistics["train"]
    assert {f.get_attribute("data-feature") for f in _figure(browser, "distribution")} == set(features)


def _assert_numbers_match_ml_metadata(browser, summary):
    from selenium.webdriver.common.by import By

    for slice_name, values in summary.metrics.items():
        row = browser.find_element(By.CSS_SELECTOR, f'#metrics tr[data-slice="{slice_name}"]')
        shown = row.find_element(By.CSS_SELECTOR, f'td[data-metric="{ACCURACY}"]').text
        assert shown == f"{values[ACCURACY]:.3f}"
        assert row.find_element(By.CSS_SELECTOR, 'td[data-metric="example_count"]').text == \
            f"{values['example_count']:.0f}"
    overall = summary.metrics["Overall"]
    for class_id, name in enumerate(summary.class_names):
        row = browser.find_element(By.CSS_SELECTOR, f'#per-class tr[data-class="{name}"]')
        for metric in ("precision", "recall"):
            assert row.find_element(By.CSS_SELECTOR, f'td[data-metric="{metric}"]').text == \
                f"{overall[f'{metric}/class_{class_id}']:.3f}"
    for node in summary.nodes:
        row = browser.find_element(By.CSS_SELECTOR, f'#components tr[data-node="{node.node_id}"]')
        assert row.find_elements(By.TAG_NAME, "td")[1].text == node.state
    pushed = browser.find_element(By.ID, "pushed")
    assert pushed.get_attribute("data-version") == summary.pushed_version
    assert browser.find_element(By.ID, "blessing").get_attribute("data-blessed") == "true"


def _save_screenshot(browser, tmp_path):
    """The page as a PNG; with TFXT_REPORT_SCREENSHOT=docs/report.png it is also copied there (README)."""
    loaded_ms = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;")
    print(f"report page loaded in {loaded_ms:.0f} ms")
    path = str(tmp_path / "report.png")
    # The Model section: metrics, the slice plot and the confusion matrix in one view.
    browser.execute_script("document.getElementById('model').scrollIntoView();")
    assert browser.get_screenshot_as_file(path)
    assert os.path.getsize(path) > 10_000
    target = os.environ.get("TFXT_REPORT_SCREENSHOT")
    if target:
        shutil.copyfile(path, target)

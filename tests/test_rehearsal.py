"""The rehearsal (`pipeline.ops.rehearsal`): the documented changes land at their spans, and its
timeline, read back from the records, shows each of them.

The default size (12 spans) is measured in BENCHMARKS.md. `short_rehearsal` runs the same four
changes compressed into six spans (two clean spans first, so that one clean span is compared
with a clean span), at the rehearsal's own small training size.
"""

import os

import pandas as pd
import pytest

from pipeline.ops import rehearsal, synthetic


@pytest.fixture(scope="module")
def profile():
    return synthetic.fit_profile()


def _span(profile, span, rows=400):
    return rehearsal.inject(synthetic.generate(profile, rows, seed=span), span)


def test_clean_spans_are_the_generator_s_rows(profile):
    clean = [span for span in range(1, 13) if span not in rehearsal.CHANGES]
    for span in clean:
        pd.testing.assert_frame_equal(_span(profile, span), synthetic.generate(profile, 400, seed=span))


def test_each_documented_change_lands_at_its_span(profile):
    shifted = _span(profile, 4)["bill_length_mm"].mean() - synthetic.generate(profile, 400, seed=4)[
        "bill_length_mm"].mean()
    assert shifted > 8
    islands = _span(profile, 6)["island"]
    assert 0.2 < (islands == "Anvers").mean() < 0.5
    assert (_span(profile, 8)["species"] == "Gentoo").mean() == pytest.approx(0.75, abs=0.01)
    blank = _span(profile, 10)["bill_length_mm"].isna().mean()
    assert 0.3 < blank < 0.55
    assert set(rehearsal.CHANGES) == {4, 6, 8, 10}


def test_a_written_span_is_complete_and_keeps_the_csv_layout(profile, tmp_path):
    from pipeline.ops import watch

    folder = rehearsal.write_span(str(tmp_path), 6, 50, 0, profile)
    assert watch.complete_spans(str(tmp_path)) == [6]
    header = open(f"{folder}/penguins.csv").readline().strip().split(",")
    assert header == ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                      "body_mass_g", "sex", "year"]


# The four documented changes, moved to spans 3-6. The changes that stop the data gate come last:
# a stopped span's successor stops too while the two-span window still holds it.
SHORT_SCHEDULE = {3: rehearsal.CHANGES[4], 4: rehearsal.CHANGES[8], 5: rehearsal.CHANGES[6],
                  6: rehearsal.CHANGES[10]}


@pytest.fixture(scope="module")
def short_rehearsal(tmp_path_factory):
    import io

    out_dir = str(tmp_path_factory.mktemp("rehearsal"))
    rows = rehearsal.rehearse(out_dir, spans=6, changes=SHORT_SCHEDULE, stream=io.StringIO())
    return rehearsal.rehearsal_config(out_dir), {row.span: row for row in rows}


@pytest.mark.e2e
def test_drift_is_found_at_the_shifted_spans_on_the_changed_feature_and_not_at_a_clean_one(
        short_rehearsal):
    _, rows = short_rehearsal
    assert rows[1].drift == []  # one span: nothing to compare yet
    assert rows[2].drift == []  # clean span after a clean span
    assert rows[3].drift == ["bill_length_mm"]  # the mean shift
    # The class balance: the label's distribution (L-infinity distance on species).
    assert "species" in rows[4].drift


@pytest.mark.e2e
def test_the_data_gate_stops_the_new_category_and_the_blank_values(short_rehearsal):
    from models import features

    _, rows = short_rehearsal
    assert [rows[span].stopped for span in (1, 2, 3, 4)] == ["", "", "", ""]
    # 'Anvers' is not in island's schema domain: stopped before drift is measured or a model trained.
    assert rows[5].stopped.startswith("data: ") and "island" in rows[5].stopped.split(": ")[1].split(",")
    assert (rows[5].training, rows[5].blessed, rows[5].pushed_version) == ("-", None, None)
    # 40% blank in each numeric column, over validation.max_blank_fraction (10%).
    assert set(features.NUMERIC_FEATURE_KEYS) <= set(rows[6].stopped.split(": ")[1].split(","))
    assert rows[6].training == "-"


@pytest.mark.e2e
def test_every_trained_span_after_the_first_starts_warm_and_the_timeline_is_read_from_records(
        short_rehearsal):
    config, rows = short_rehearsal
    assert rows[1].training == "cold"
    assert [rows[span].training for span in (2, 3, 4)] == ["warm", "warm", "warm"]
    assert rows[1].pushed_version is not None and rows[1].blessed
    # The served model was checked on every new span once one was served.
    assert all(rows[span].served_accuracy is not None for span in range(2, 7))
    # Each pushed version the records name is in the serving directory.
    pushed = [row.pushed_version for row in rows.values() if row.pushed_version]
    assert pushed and all(os.path.isfile(os.path.join(config.serving_model_dir, v, "saved_model.pb"))
                          for v in pushed)

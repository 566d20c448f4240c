"""The rehearsal (`pipeline.ops.rehearsal`): the documented changes land at their spans.

The full loop over spans is measured in BENCHMARKS.md; these tests check the injected data
without a pipeline run.
"""

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

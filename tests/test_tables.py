"""The book's table cells (ddgan_core.tables)."""

from ddgan_core.tables import interval_cell, range_cell


def test_interval_cell_shows_the_interval_only_when_both_ends_exist():
    row = {"fid": 12.345, "fid_lo": 11.0, "fid_hi": 13.5, "kid": 0.0123, "recall": 0.5,
           "recall_lo": None, "recall_hi": None}
    assert interval_cell(row, "fid", ".1f") == "12.3<br>[11.0, 13.5]"
    assert interval_cell(row, "kid", ".1f", 1e3) == "12.3"
    assert interval_cell(row, "recall", ".2f") == "0.50"


def test_range_cell_collapses_equal_ends():
    assert range_cell({"classes_min": 3, "classes_max": 5}, "classes") == "3–5"
    assert range_cell({"classes_min": 4.0, "classes_max": 4.0}, "classes") == "4"

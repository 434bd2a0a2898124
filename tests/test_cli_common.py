"""What every command shares: one-line messages that a file name cannot split or forge, and a
missing package named with its ``pip install``."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from sice.cli._common import BatchReport, one_line, report_errors


@pytest.mark.parametrize("text,shown", [
    ("plain name ü.jpg", "plain name ü.jpg"),
    ("a\nsice: failed: b.jpg", "a\\nsice: failed: b.jpg"),
    ("cr\rtab\tesc\x1b[2Kdel\x7fnel\x85", "cr\\rtab\\tesc\\x1b[2Kdel\\x7fnel\\x85"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("undecodable \udcff byte", "undecodable \\udcff byte"),
    ("back\\slash", "back\\slash"),
])
def test_one_line_escapes_control_characters_only(text, shown):
    assert one_line(text) == shown
    assert len(one_line(text).splitlines()) == 1


def test_batch_report_prints_one_line_per_failure():
    @click.command()
    def cmd():
        report = BatchReport()
        report.failure("in/evil\nsice: failed: forged.jpg", "cannot decode:\nsecond line")
        report.finish()

    result = CliRunner().invoke(cmd)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["sice: failed: in/evil\\nsice: failed: forged.jpg: cannot decode:\\nsecond line",
                                          "0 files done, 1 failed"]


def test_missing_package_is_one_line_naming_the_pip_install():
    @click.command()
    @report_errors
    def cmd():
        import cv2_not_there  # noqa: F401

    @click.command()
    @report_errors
    def needs_opencv():
        raise ModuleNotFoundError("No module named 'cv2'", name="cv2")

    result = CliRunner().invoke(cmd)
    assert result.exit_code == 1
    assert result.stderr == ("sice: error: this command needs the Python package 'cv2_not_there', which is not "
                             "installed here: pip install cv2_not_there\n")
    result = CliRunner().invoke(needs_opencv)
    assert result.stderr.endswith("pip install opencv-contrib-python-headless\n")

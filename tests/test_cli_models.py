"""``sice models``: one row per registered model with its alias, parameter count and weights status;
every name listed as shipped loads.

The expected rows are written out here, not asked of the registry the command reads: a model
that disappears, a changed parameter count or a lost alias fails the test.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from sice.cli.main import cli

#: name -> (alias, parameters, weights, words its description starts with)
EXPECTED = {
    "can32": ("-", "66,259", "-", "CAN32 (Chen, Xu, Koltun 2017)"),
    "gaingrid": ("-", "513,340", "-", "bilateral grid of per-channel gains"),
    "gaingrid-ensemble": ("-", "1,027,200", "-", "the mean of several gaingrids"),
    "hdrnet": ("-", "482,080", "-", "HDRNet (Gharbi et al. 2017)"),
    # the release networks: sums of the release's blob sizes (DESIGN.md)
    "sice2018": ("-", "560,323", "-", "SICE Model 2 'Twostage'"),
    "sice2018-perpixel": ("-", "655,408", "-", "SICE Model 3 'Perpixel'"),
    "sice2018-residual": ("-", "557,443", "-", "SICE Model 1 'residual'"),
    # the model card's count: 513,340 of the gaingrid trunk + the 35-channel head (64 x 35 + 35)
    # minus gaingrid's 24-channel head (64 x 24 + 24) and its 4 guide parameters
    "tonegrid": ("default", f"{513_340 + (64 * 35 + 35) - (64 * 24 + 24) - 4:,}", "shipped",
                 "bilateral grid of monotone luma curves"),
    "tonegrid-ensemble": ("-", "1,028,102", "-", "the mean of several tonegrids"),  # 2 x tonegrid
}
SHIPPED = ["tonegrid"]


def _rows() -> dict[str, list[str]]:
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ALIAS", "PARAMETERS", "WEIGHTS", "DESCRIPTION"]
    return {line.split()[0]: line for line in lines[1:]}


def test_lists_every_registered_model_with_its_parameters():
    rows = _rows()
    assert list(rows) == sorted(EXPECTED)  # every model, in name order
    for name, line in rows.items():
        alias, params, weights, description = EXPECTED[name]
        assert line.split()[1:4] == [alias, params, weights], line
        # the description is the last column, after the padded ones
        assert line.split(maxsplit=4)[4].startswith(description), line
    assert [name for name, line in rows.items() if line.split()[3] == "shipped"] == SHIPPED


def test_the_previous_default_no_longer_ships():
    assert _rows()["gaingrid-ensemble"].split()[1:4:2] == ["-", "-"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_listed_shipped_name_enhances_through_the_cli(name, tmp_path):
    from sice.io import read_image, write_image

    write_image(tmp_path / "a.png", np.full((24, 32, 3), 30, np.uint8))
    r = subprocess.run([sys.executable, "-m", "sice", "enhance", str(tmp_path / "a.png"), "-m", name,
                        "-o", str(tmp_path / "out.png")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert read_image(tmp_path / "out.png").pixels.mean() > 30
    by_alias = subprocess.run([sys.executable, "-m", "sice", "enhance", str(tmp_path / "a.png"), "-m", "default",
                               "-o", str(tmp_path / "alias.png")], capture_output=True, text=True, timeout=300)
    assert by_alias.returncode == 0, by_alias.stderr
    if EXPECTED[name][0] == "default":  # the alias is the same model
        np.testing.assert_array_equal(read_image(tmp_path / "alias.png").pixels,
                                      read_image(tmp_path / "out.png").pixels)


def test_weights_and_enhancement_agree_on_the_default():
    from sice.enhancement import Enhancer
    from sice.weights import DEFAULT_MODEL

    assert DEFAULT_MODEL == "tonegrid"
    assert Enhancer().name == "tonegrid"
    assert Enhancer("default", backend="torch").name == "tonegrid"

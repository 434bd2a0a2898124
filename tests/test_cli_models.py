"""``sice models``: one row per registered model with its alias, parameter count and weights status;
every name listed as shipped loads."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from sice.cli.main import cli
from sice.models import count_parameters, create_model, list_models, load_model, model_config
from sice.models.checkpoint import shipped_weights_path
from sice.weights import DEFAULT_MODEL


def _rows() -> dict[str, list[str]]:
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ALIAS", "PARAMETERS", "WEIGHTS", "DESCRIPTION"]
    return {line.split()[0]: line for line in lines[1:]}


def test_lists_every_registered_model_with_its_parameters():
    rows = _rows()
    assert sorted(rows) == list_models()
    for name, line in rows.items():
        _, alias, params, weights = line.split()[:4]
        shipped = shipped_weights_path(name) is not None
        model = load_model(name) if shipped else create_model(name)
        assert params == f"{count_parameters(model):,}"
        assert weights == ("shipped" if shipped else "-")
        assert alias == ("default" if name == DEFAULT_MODEL else "-")
        assert line.rstrip().endswith(model_config(name).description)


def test_the_shipped_model_is_listed_under_its_real_name_with_default_as_alias():
    rows = _rows()
    assert rows["tonegrid"].split()[1:4:2] == ["default", "shipped"]
    assert rows["gaingrid-ensemble"].split()[3] == "-"  # the previous default no longer ships
    # the model card's count: 513,340 of the gaingrid trunk + the 35-channel head (64 x 35 + 35)
    # minus gaingrid's 24-channel head (64 x 24 + 24) and its 4 guide parameters
    assert rows["tonegrid"].split()[2] == f"{513_340 + (64 * 35 + 35) - (64 * 24 + 24) - 4:,}"


@pytest.mark.parametrize("name", [n for n in list_models() if shipped_weights_path(n)])
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
    if name == DEFAULT_MODEL:  # the alias is the same model
        np.testing.assert_array_equal(read_image(tmp_path / "alias.png").pixels,
                                      read_image(tmp_path / "out.png").pixels)


def test_weights_and_enhancement_agree_on_the_default():
    from sice.enhancement import Enhancer

    assert Enhancer().name == DEFAULT_MODEL
    assert Enhancer("default", backend="torch").name == DEFAULT_MODEL


def test_release_networks_have_the_release_sizes():
    rows = {name: line.split()[2] for name, line in _rows().items()}
    assert rows["sice2018"] == "560,323"
    assert rows["sice2018-residual"] == "557,443"
    assert rows["sice2018-perpixel"] == "655,408"

"""``sice models``: one row per registered model with its parameter count and weights status."""
from __future__ import annotations

from click.testing import CliRunner

from sice.cli.main import cli
from sice.models import count_parameters, create_model, list_models, model_config
from sice.models.checkpoint import shipped_weights_path


def test_lists_every_registered_model_with_its_parameters():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["NAME", "PARAMETERS", "WEIGHTS", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert sorted(rows) == list_models()
    for name, line in rows.items():
        _, params, weights = line.split()[:3]
        assert params == f"{count_parameters(create_model(name)):,}"
        assert weights == ("shipped" if shipped_weights_path(name) else "-")
        assert line.rstrip().endswith(model_config(name).description)


def test_release_networks_have_the_release_sizes():
    output = CliRunner().invoke(cli, ["models"]).output
    rows = {line.split()[0]: line.split()[1] for line in output.splitlines()[1:]}
    assert rows["sice2018"] == "560,323"
    assert rows["sice2018-residual"] == "557,443"
    assert rows["sice2018-perpixel"] == "655,408"

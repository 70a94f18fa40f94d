"""One documented schema for every command: the JSON Schema in dscalc/report/schema.json validates the output of
every command (with and without --time), every row carries the base keys, and CSV has flat, dotted columns."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

SCHEMA = json.loads((Path(__file__).parents[1] / "dscalc" / "report" / "schema.json").read_text())
BASE = {"name", "kind", "params", "macs", "flops"}

LAYER = ["--k", "3", "--cin", "8", "--cout", "16", "--size", "8"]
COMMANDS = {
    "layer": ["layer", *LAYER],
    "layer --time": ["layer", *LAYER, "--time"],
    "layer linear": ["layer", "--kind", "linear", "--cin", "8", "--cout", "4"],
    "network": ["network", "cifar_separable"],
    "network --time": ["network", "{spec}", "--time"],
    "network --list": ["network", "--list"],
    "profile": ["profile", "{model}", "-i", "1x16x8x8"],
    "profile --time": ["profile", "{model}", "-i", "1x16x8x8", "--time"],
    "compare layer": ["compare", *LAYER],
    "compare network": ["compare", "cifar_conv"],
    "compare model": ["compare", "{model}", "-i", "1x16x8x8"],
    "device": ["device"],
    "sweep": ["sweep", "--cin", "8,16", "--size", "8", "--no-time"],
    "explain": ["explain", "--kind", "separable", "--cin", "2", "--cout", "3", "--k", "3", "--size", "4"],
}


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_matches_the_schema(name, cli, model_files, fixed_ceilings):
    args = [a.format(**model_files) for a in COMMANDS[name]]
    r = cli(*args, "-f", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema_version"] == 1 and data["command"] == args[0]
    jsonschema.validate(data, SCHEMA)
    for row in data.get("rows", []):
        assert row.keys() >= BASE, (name, sorted(BASE - row.keys()))
    if "timing" in data:
        assert data["timing"]["rows"], name


def test_the_schema_catches_a_missing_base_key(cli, fixed_ceilings):
    data = json.loads(cli("layer", *LAYER, "-f", "json").stdout)
    del data["rows"][0]["macs"]
    with pytest.raises(jsonschema.ValidationError, match="'macs' is a required property"):
        jsonschema.validate(data, SCHEMA)


@pytest.mark.parametrize("name", ["layer", "network", "profile", "compare layer", "sweep"])
def test_csv_is_flat(name, cli, model_files, fixed_ceilings):
    args = [a.format(**model_files) for a in COMMANDS[name]]
    r = cli(*args, "-f", "csv")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines[0].split(",")
    assert set(header) >= BASE, (name, sorted(BASE - set(header)))
    body = "\n".join(lines[1:])
    assert "{" not in body and "'" not in body and "None" not in body  # no Python reprs
    assert not any(line.split(",")[header.index("kind")] == "total" for line in lines[1:])  # totals are not rows


def test_csv_header_of_a_layer_with_its_pair(cli):
    header = cli("layer", *LAYER, "-f", "csv").stdout.splitlines()[0]
    assert header == ("name,kind,input_shape,output_shape,params,weights,bias,macs,flops,bytes,intensity,kernel,"
                      "stride,padding,dilation,groups")
    # padding pairs are JSON text in one cell; shapes are 1x8x8x8
    row = cli("layer", *LAYER, "-f", "csv").stdout.splitlines()[1]
    assert row.startswith("standard,standard,1x8x8x8,1x16x8x8,1152,1152,0,73728,") and '"[[1,1],[1,1]]"' in row

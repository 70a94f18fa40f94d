"""Hugging Face models built from a configuration alone (hf:MODEL_TYPE, a save_pretrained folder) and the token,
dtyped and named inputs: against FlopCounterMode/2 and sum(p.numel()) of the same transformers model built here
from the same configuration. The oracle runs attention eagerly (explicit matmuls): torch's FlopCounterMode does
not count the CPU kernel of scaled_dot_product_attention that the models use by default. Also the declared-input
defaults of ONNX files."""

from __future__ import annotations

import json

import pytest
from conftest import run_in_process

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
dscalc = run_in_process


def _profile(*args):
    r = dscalc("profile", *args, "-f", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _oracle(model, **inputs):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops() // 2


def _tokens(n=128):
    ids = torch.zeros(1, n, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_hf_bert_with_named_int64_inputs():
    data = _profile("hf:bert", "-i", "input_ids=1x128:int64", "-i", "attention_mask=1x128:int64")
    model = transformers.AutoModel.from_config(transformers.BertConfig(), attn_implementation="eager").eval()
    assert data["totals"]["macs"] == _oracle(model, **_tokens())
    assert data["totals"]["params"] == sum(p.numel() for p in model.parameters())


def test_hf_text_model_default_inputs_are_tokens():
    """Without --input: input_ids and attention_mask, 1 x 128 int64 (the same count as given explicitly)."""
    data = _profile("hf:distilbert")
    model = transformers.AutoModel.from_config(transformers.DistilBertConfig(), attn_implementation="eager").eval()
    assert data["inputs"] == [[1, 128], [1, 128]]
    assert data["totals"]["macs"] == _oracle(model, **_tokens())


@pytest.mark.parametrize("kind", ["mobilenet_v2", "convnext"])
def test_hf_vision_default_config(kind):
    cfg = transformers.AutoConfig.for_model(kind)
    data = _profile(f"hf:{kind}")
    model = transformers.AutoModel.from_config(cfg).eval()
    size = cfg.image_size
    assert data["inputs"] == [[1, cfg.num_channels, size, size]]
    assert data["totals"]["macs"] == _oracle(model, pixel_values=torch.randn(1, cfg.num_channels, size, size))
    assert data["totals"]["params"] == sum(p.numel() for p in model.parameters())


def test_hf_folder_with_config_only(tmp_path):
    """A save_pretrained folder is a model, built from its config.json (no weights there, none needed), with the
    task head its `architectures` names."""
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                  vocab_size=1000, num_labels=3, architectures=["BertForSequenceClassification"])
    cfg.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    data = _profile(str(tmp_path), "-i", "input_ids=1x32:int64", "-i", "attention_mask=1x32:int64")
    model = transformers.BertForSequenceClassification._from_config(cfg, attn_implementation="eager").eval()
    assert data["totals"]["macs"] == _oracle(model, **_tokens(32))
    assert data["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert "classifier" in {r["name"] for r in data["rows"]}  # the head the config names


def test_hf_unknown_model_type_is_bad_input():
    r = dscalc("profile", "hf:no_such_model_type")
    assert r.returncode == 2 and "no model type 'no_such_model_type'" in r.stderr


def test_input_dtype_and_keyword_parsing():
    from dscalc.cost.parse import input_spec

    spec = input_spec("input_ids=1x128:int64")
    assert spec == (1, 128) and spec.name == "input_ids" and spec.dtype == "int64"
    assert input_spec("1x3x8x8") == (1, 3, 8, 8) and input_spec("1x3x8x8").name == ""
    for bad in ("1x128:float7", "not a name=1x2", "x=1xq"):
        r = dscalc("profile", "hf:bert", "-i", bad)
        assert r.returncode == 2 and r.stderr.startswith("dscalc: error: --input: ")


def test_onnx_takes_its_declared_shape(tmp_path):
    """An ONNX file without --input: its declared shape, a dynamic batch as 1; another dynamic dimension asks for
    --input."""
    pytest.importorskip("onnx")

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(100, 16)
            self.fc = torch.nn.Linear(16, 4)

        def forward(self, ids):
            return self.fc(self.emb(ids))

    ids = torch.zeros(1, 10, dtype=torch.long)
    batch, both = tmp_path / "batch.onnx", tmp_path / "both.onnx"
    torch.onnx.export(Embed(), (ids,), str(batch), dynamo=False, input_names=["ids"],
                      dynamic_axes={"ids": {0: "batch"}})
    torch.onnx.export(Embed(), (ids,), str(both), dynamo=False, input_names=["ids"],
                      dynamic_axes={"ids": {0: "batch", 1: "seq"}})
    data = _profile(str(batch))
    assert data["inputs"] == [[1, 10]] and data["totals"]["macs"] == 10 * 16 * 4  # 10 tokens x 16 x 4
    r = dscalc("profile", str(both))
    assert r.returncode == 2 and "dimension 1 is dynamic" in r.stderr and "--input" in r.stderr

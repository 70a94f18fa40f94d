"""by_op_kind of a bounded zoo subset (a CNN, a mobile CNN, a ViT, an LSTM model): run once on main and once on this
branch (PYTHONPATH) to see which kinds move; totals must not."""
import json
import warnings

import timm
import torch
import torchvision

from dscalc.trace.profile import profile_model

warnings.simplefilter("ignore")
out = {}
for name, build, shape in [("torchvision:resnet18", lambda: torchvision.models.resnet18(), (1,3,224,224)),
                           ("torchvision:mobilenet_v2", lambda: torchvision.models.mobilenet_v2(), (1,3,224,224)),
                           ("torchvision:vit_b_16", lambda: torchvision.models.vit_b_16(), (1,3,224,224)),
                           ("timm:sequencer2d_s", lambda: timm.create_model("sequencer2d_s"), (1,3,224,224))]:
    with torch.device("meta"):
        m = build().eval()
    r = profile_model(m, [shape])
    kinds = {k: v["macs"] if v["macs"] else v["ops"] for k, v in r.by_op_kind.items()}
    out[name] = {"macs": r.totals["macs"], "params": r.totals["params"], "by_op_kind": kinds}
print(json.dumps(out))

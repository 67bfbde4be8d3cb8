"""The runtime loads and runs a package in a fresh interpreter without importing torch, tinysam or executorch
(whose runtime links torch: it is imported only when a .pte package is opened)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import numpy as np
import mobile_runtime
s = mobile_runtime.load_package(sys.argv[1])
img = (np.arange(80 * 120 * 3) % 251).astype(np.uint8).reshape(80, 120, 3)
s.set_image(img)
m, iou, low = s.predict(points=[[30.0, 40.0]], labels=[1])
recs = mobile_runtime.EverythingGenerator(s, mode="hierarchical", points_per_side=8,
                                          pred_iou_thresh=0.0, stability_score_thresh=0.0).generate(img)
print(json.dumps({"shape": list(m.shape), "records": len(recs),
                  "modules": sorted(k for k in sys.modules
                              if k.split(".")[0] in ("torch", "tinysam", "converters", "executorch"))}))
"""


def test_runtime_never_imports_torch(onnx_package) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(onnx_package)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    assert result["shape"] == [3, 80, 120] and result["records"] > 0

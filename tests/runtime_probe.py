"""The script both no-torch tests run in a fresh interpreter: open a package with `mobile_runtime`, predict
one point and run hierarchical everything mode, then print the shape, the record count and every loaded
module of torch, tinysam, converters or executorch (the last is imported only when a .pte package is opened)."""

RUNTIME_PROBE = """
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

"""ExecuTorch (.pte) target: the encoder, and one program whose methods are the decoder variants
(`decoder_k1`, `decoder_k16`), lowered with the XNNPACK partitioner; run by `executorch.runtime`."""

from converters.backends.base import Backend, run_lazily
from converters.backends.executorch.capabilities import CAPABILITIES
from converters.backends.executorch.recipes import APPLIED, KIND_OPS

BACKEND = Backend(
    name="executorch",
    capabilities=CAPABILITIES,
    export=run_lazily("converters.backends.executorch.export", "export_executorch"),
    runtime_kind="executorch",
    applied=APPLIED,
    kind_ops=KIND_OPS,
    calibrates=True,  # int8/mixed: the encoder's Conv2d input ranges come from the calibration images
    export_mixed=run_lazily("converters.backends.executorch.mixed", "export_mixed"),
)

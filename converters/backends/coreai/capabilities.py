"""What the Core AI target exports and needs (written into manifests, READMEs and docs from here)."""

from __future__ import annotations

TARGET = "coreai"
EXTENSION = "aimodel"
COMPATIBILITY_VERSION = "27.0"  # what coreai-torch 0.4.3 writes into every asset
MIN_OS = "iOS 27 / macOS 27 (Core AI .aimodel, compatibility version 27.0)"
MULTIFUNCTION_MIN_OS = "iOS 27 / macOS 27 (multifunction .aimodel)"
ENCODER_FUNCTION = "main"
DEFAULT_DECODER_K = 1  # the function an app gets without naming one
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "mixed", "palette4", "palette6", "w8a8-opt")

# Known Core AI problems the export works around (rendered into each package README).
KNOWN_ISSUES: tuple[dict[str, str], ...] = (
    {
        "title": "Batched matmul with a reshaped 4-D right operand is miscompiled",
        "versions": "coreai-torch 0.4.3, coreai-core 1.0.0b3 (Linux x86_64 runtime)",
        "reproduction": (
            "class M(torch.nn.Module):\n"
            "    def forward(self, a, u):            # a [1,4,32], u [1,32,32,32]\n"
            "        b, c, h, w = u.shape\n"
            "        return a @ u.reshape(b, c, h * w)  # -> [1,4,1024]\n"
            "ep = torch.export.export(M(), (torch.randn(1,4,32), torch.randn(1,32,32,32))).run_decompositions()\n"
            "asset = TorchConverter().add_exported_program(ep, input_names=['a','u'], output_names=['m'])"
            ".to_coreai().save_asset('m.aimodel')\n"
            "async with asset.executable() as model: out = await model.load_function('main')({...})"
        ),
        "expected": "max |Core AI - torch| ~1e-5 (float32 rounding)",
        "got": ("max error 32.4, mean 6.6 (inputs from torch.Generator seed 0; the largest true value is 23.8); up to 61 on the TinySAM decoder's mask logits at 128 px "
                "(K = 1; the IoU output and the K = 16 function were right). `torch.bmm` + `flatten` and a 2-D "
                "matmul of the same operands are wrong too; a flat input, inner size 64, mul + sum, and the "
                "transposed form are right"),
        "workaround": ("the export rewrites the decoder's mask product `A @ B` as `(B^T @ A^T)^T` in the "
                       "exported graph (converters/backends/coreai/mask_product.py); the reference model "
                       "and the other targets are unchanged. Parity in Core AI: mask logits within 5.1e-5"),
    },
)

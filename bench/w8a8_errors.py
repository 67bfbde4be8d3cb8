"""Where W8A8 loses accuracy: the recipe's fake-quant model layer by layer, and the packages built from it.

    .venv/bin/python bench/w8a8_errors.py [--images 16] [--targets tflite,onnx] [--sweep] [--sweep-images 8]

Measured at the default weights' trained size (256 px) on held-out mini-SA (`bench.w8a8_eval`):
encoder relative error and 1-click mask agreement with the float model.

- recipes: `before` (the scale search as `convert --precision w8a8` ran it before: activation candidates
  down to 0.01 x the calibration maximum, every encoder layer with static int8 inputs) and `after`
  (`converters.w8a8` now: `ACT_LOW`, `W_LOW`/`W_HIGH`, `FLOAT_ACTIVATION_LAYERS`, `FLOAT_LAYERS`); `no clipping` is
  `after` without those rules (every layer static int8). Each on the torch fake-quant model
  (all layers, encoder only, decoder only, the encoder's trunk layers only / all but them) and, with
  `--targets`, as packages opened with `mobile_runtime`.
- `--sweep`: per-layer table of `before`: each layer alone quantized (`only`) and every layer but it (`all_but`).
Writes bench/results/w8a8_errors.json (or `--out`) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.w8a8_eval import compare, load_held_out, measure_torch, predictor_answers, set_reference  # noqa: E402

CHECKPOINT = ROOT / "tinysam/weights/tinysam_minisa_256.safetensors"
IMAGE_SIZE = 256  # the default weights' trained size


def _all_layers(model) -> list[str]:  # noqa: ANN001
    from tinysam.quant.qmodel import quant_layers, quantize_model

    return list(quant_layers(quantize_model(model)))


def _encoder_layers(q) -> list[str]:  # noqa: ANN001
    from tinysam.quant.qmodel import quant_layers

    return [n for n, m in quant_layers(q).items() if n.startswith("image_encoder") and m.calibrated]


def _ruled(names: list[str]) -> list[str]:
    """The layers of `names` that `converters.w8a8.FLOAT_ACTIVATION_LAYERS` keeps with float inputs."""
    from converters.w8a8 import float_activation_reason

    return [n for n in names if float_activation_reason(n) is not None]


def _with(q, on: list[str], float_inputs: tuple[str, ...] = ()) -> None:  # noqa: ANN001
    """Quantize exactly `on`; layers in `float_inputs` keep float inputs (int8 weights; a matmul stays float)."""
    from tinysam.quant.qmodel import quant_layers, set_quant

    set_quant(q, False)
    set_quant(q, True, on)
    for n, m in quant_layers(q).items():
        m.act_quant = n not in float_inputs
        if n in float_inputs and m.kind == "matmul":
            m.quant_enabled = False


def _decoder_group(name: str) -> str:
    from tinysam.quant.qmodel import layer_group

    return re.sub(r"(layers|mlps)\.\d+", r"\1.*", layer_group(name))


def torch_rows(q, held, rules: bool) -> dict:  # noqa: ANN001
    """The fake-quant model's error for whole parts of the model (`rules`: `FLOAT_ACTIVATION_LAYERS` and `FLOAT_LAYERS` applied)."""
    from converters.w8a8 import float_layer_reason
    from tinysam.quant.qmodel import quant_layers

    cal = [n for n, m in quant_layers(q).items() if m.calibrated and not (rules and float_layer_reason(n))]
    enc = _encoder_layers(q)
    dec = [n for n in cal if n not in enc]
    trunk = _ruled(enc)
    keep = tuple(_ruled(cal)) if rules else ()
    rows = {}
    for label, on, fl in (("all", cal, keep), ("encoder", enc, keep), ("decoder", dec, keep),
                          ("encoder trunk only", trunk, ()), ("encoder but trunk", [n for n in enc if n not in trunk], ()),
                          ("encoder, trunk inputs float", enc, tuple(trunk))):
        _with(q, on, fl)
        rows[label] = measure_torch(q, held)
    _with(q, cal, keep)
    return rows


def decoder_groups(q, held) -> dict:  # noqa: ANN001
    """Decoder groups (blocks merged): that group alone quantized, and the decoder but it."""
    from tinysam.quant.qmodel import quant_layers

    dec = [n for n, m in quant_layers(q).items() if m.calibrated and not n.startswith("image_encoder")]
    groups: dict[str, list[str]] = {}
    for n in dec:
        groups.setdefault(_decoder_group(n), []).append(n)
    rows = {}
    for g, names in groups.items():
        _with(q, names)
        only = measure_torch(q, held)
        _with(q, [n for n in dec if n not in names])
        rows[g] = {"layers": len(names), "only": only, "decoder_but": measure_torch(q, held)}
    _with(q, [n for n, m in quant_layers(q).items() if m.calibrated])
    return rows


def sweep(q, held, say=print) -> list[dict]:  # noqa: ANN001
    """Per calibrated layer: only it quantized, and all but it."""
    from tinysam.quant.qmodel import layer_group, quant_layers

    layers = {n: m for n, m in quant_layers(q).items() if m.calibrated}
    names = list(layers)
    out = []
    for n, m in layers.items():
        _with(q, [n])
        only = measure_torch(q, held)
        _with(q, [x for x in names if x != n])
        but = measure_torch(q, held)
        out.append({"layer": n, "group": layer_group(n), "kind": m.kind, "a_kind": m.a_kind, "only": only, "all_but": but})
        say(f"{n:62s} only rel {only['rel_error']:.4f} agr {only['agreement_1pt']:.3f} | "
            f"all-but rel {but['rel_error']:.4f} agr {but['agreement_1pt']:.3f}")
    _with(q, names)
    return out


def package_row(model, info, q, target: str, held, work: Path) -> dict:  # noqa: ANN001
    """Build the W8A8 package of `target` from `q` (no parity gate) and measure it."""
    import mobile_runtime
    from converters.api import build_package
    from converters.options import ConvertOptions

    t0 = time.perf_counter()
    opts = ConvertOptions(targets=target, precision="w8a8", out_dir=work, verify=False, overwrite=True,
                          image_size=IMAGE_SIZE)
    res = build_package(model, info, target, opts, qmodel=q)
    session = mobile_runtime.load_package(res.path, num_threads=1)
    row = compare(held, *predictor_answers(session, held))
    split = json.loads((res.path / "manifest.json").read_text())["precision_plan"]["layer_counts"]
    return {**row, "layer_counts": split, "build_s": round(time.perf_counter() - t0, 1)}


def run(images: int, targets: list[str], do_sweep: bool, sweep_images: int, say=print) -> dict:  # noqa: ANN001
    import torch

    import converters.w8a8 as w8
    from converters.api import load_model
    from converters.mixed_plan import SEARCH_CANDIDATES, SEARCH_ROUNDS
    from tinysam.quant.search import SearchConfig

    torch.set_num_threads(1)
    model, info = load_model("tinysam", CHECKPOINT, IMAGE_SIZE)
    held = set_reference(load_held_out(images, IMAGE_SIZE), model)
    say(f"{held.description}, {sum(len(c) for c in held.clicks)} instances")
    recipes = {"before": SearchConfig(n_candidates=SEARCH_CANDIDATES, rounds=SEARCH_ROUNDS),
               "no clipping": SearchConfig(n_candidates=SEARCH_CANDIDATES, rounds=SEARCH_ROUNDS, act_low=w8.ACT_LOW,
                                           w_low=w8.W_LOW, w_high=w8.W_HIGH),
               "after": SearchConfig(n_candidates=SEARCH_CANDIDATES, rounds=SEARCH_ROUNDS, act_low=w8.ACT_LOW,
                                     w_low=w8.W_LOW, w_high=w8.W_HIGH)}
    rules, float_layers = w8.FLOAT_ACTIVATION_LAYERS, w8.FLOAT_LAYERS
    out: dict = {"what": __doc__.splitlines()[0], "data": held.description, "image_size": IMAGE_SIZE,
                 "weights": CHECKPOINT.name, "calibration": f"{w8.CALIBRATION_IMAGES} bundled photos",
                 "float_activation_layers": [{"pattern": r.pattern, "reason": r.reason} for r in rules],
                 "float_layers": [{"pattern": r.pattern, "reason": r.reason} for r in float_layers],
                 "layers_kept_float": _ruled(list(_all_layers(model))),
                 "recipes": {}}
    qs = {}
    for name, cfg in recipes.items():
        t0 = time.perf_counter()
        same = [n for n, c in recipes.items() if c == cfg and n in qs]
        q = qs[same[0]] if same else w8.recipe_qmodel(model, None, cfg=cfg)
        qs[name] = q
        rec = {"search": q.recipe_calibration["search"], "search_s": round(time.perf_counter() - t0, 1),
               "float_activation_layers_applied": name == "after",
               "torch": torch_rows(q, held, rules=name == "after"), "packages": {}}
        if name == "before":
            rec["decoder_groups"] = decoder_groups(q, held)
        for t in targets if name in ("before", "after") else ():
            w8.FLOAT_ACTIVATION_LAYERS = rules if name == "after" else ()
            w8.FLOAT_LAYERS = float_layers if name == "after" else ()
            try:
                with tempfile.TemporaryDirectory(prefix="w8a8-errors-") as tmp:
                    rec["packages"][t] = package_row(model, info, q, t, held, Path(tmp))
            finally:
                w8.FLOAT_ACTIVATION_LAYERS, w8.FLOAT_LAYERS = rules, float_layers
        out["recipes"][name] = rec
        say(_table(name, rec))
    if do_sweep:
        small = set_reference(load_held_out(sweep_images, IMAGE_SIZE), model)
        out["layers"] = {"recipe": "before", "data": small.description, "rows": sweep(qs["before"], small, say)}
    return out


def _table(name: str, rec: dict) -> str:
    lines = [f"\nrecipe {name}: {rec['search']}", f"| {'model':40s} | rel. error | agreement 1pt | worst |",
             "|---|---|---|---|"]
    rows = [(f"torch fake-quant: {k}", v) for k, v in rec["torch"].items()]
    rows += [(f"{t} package", v) for t, v in rec["packages"].items()]
    for label, v in rows:
        lines.append(f"| {label:40s} | {100 * v['rel_error']:9.2f}% | {v['agreement_1pt']:13.4f} | {v['worst_agreement']:.3f} |")
    for g, v in rec.get("decoder_groups", {}).items():
        lines.append(f"| decoder group {g[13:]:26s} | only agreement {v['only']['agreement_1pt']:.4f} | "
                     f"decoder but it {v['decoder_but']['agreement_1pt']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16, help="held-out mini-SA images")
    ap.add_argument("--targets", default="tflite,onnx", help="packages to build and measure ('' for none)")
    ap.add_argument("--sweep", action="store_true", help="per-layer table (slow: 2 runs per layer)")
    ap.add_argument("--sweep-images", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench/results/w8a8_errors.json"))
    a = ap.parse_args(argv)
    targets = [t for t in re.split(r"[,\s]+", a.targets) if t]
    res = run(a.images, targets, a.sweep, a.sweep_images)
    Path(a.out).write_text(json.dumps(res, indent=1, allow_nan=False))
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()

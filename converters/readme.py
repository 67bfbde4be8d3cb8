"""README.md for app developers, generated from the manifest (one source of truth)."""

from __future__ import annotations


def _io_table(entries: list[dict]) -> str:
    rows = [f"| `{e['name']}` | {e['shape']} | {e['dtype']} | {e['meaning']} |" for e in entries]
    return "| tensor | shape | dtype | meaning |\n|---|---|---|---|\n" + "\n".join(rows)


def _preprocess_code(pre: dict) -> str:
    s = pre["image_size"]
    if pre["resize"] == "longest_side":
        resize = (f"scale = {s} / max(H, W)\n"
                  "new_h, new_w = int(H * scale + 0.5), int(W * scale + 0.5)\n"
                  "img = pil_resize(rgb_uint8, (new_w, new_h), BILINEAR)      # uint8 HxWx3\n")
    else:
        resize = (f"new_h, new_w = {s}, {s}\n"
                  f"img = bilinear_resize(float(rgb_uint8), ({s}, {s}), align_corners=False)  # no antialias\n")
    return ("```\n" + resize +
            f"x = (float(img) - pixel_mean) / pixel_std                 # mean {pre['pixel_mean']}, std {pre['pixel_std']}\n"
            f"x = zero_pad_bottom_right(x, to=({s}, {s}))                # pad AFTER normalizing\n"
            f"image = transpose(x, HWC -> CHW)[None]                    # float32 [1,3,{s},{s}]\n```")


def _prompt_code(prompts: dict, pre: dict) -> str:
    n = prompts["slots"]
    box_rule = ("if no box: append ONE pad point (0, 0) with label -1\n"
                if prompts["family"] == "sam" else
                f"pad with label -1 (coords 0) up to {prompts['max_points']} points, truncate beyond\n")
    frame = ("x' = x * new_w / W ; y' = y * new_h / H" if pre["resize"] == "longest_side"
             else f"x' = x * {pre['image_size']} / W ; y' = y * {pre['image_size']} / H")
    return ("```\n"
            f"{frame}                     # original pixels -> model input frame\n"
            "points (labels 1 positive / 0 negative), then box corners (labels 2, 3)\n"
            + box_rule +
            f"fill the remaining of the {n} slots with coords (0, 0) and label -2 (empty slot)\n"
            "mask_input = previous low_res_masks[k, best] or zeros; has_mask_input = 1 or 0\n```")


def _post_code(post: dict, prompts: dict, pre: dict) -> str:
    pick = ("always take tokens 1..3 (this model always returns the multimask outputs)"
            if prompts["always_multimask"] else
            "multimask: tokens 1..3; single mask: token 0")
    if post["mask_postprocess"] == "sam":
        up = (f"m = bilinear(low_res, ({pre['image_size']}, {pre['image_size']}), align_corners=False)\n"
              "m = m[:new_h, :new_w]                                       # crop the padding\n"
              "m = bilinear(m, (H, W), align_corners=False)\n")
    else:
        up = "m = bicubic(low_res, (H, W), align_corners=False)\n"
    return ("```\n"
            f"select: {pick}; best = argmax(iou_predictions) among them\n"
            + up +
            f"mask = m > {post['mask_threshold']}                                   # logits, no sigmoid needed\n```")


def _multifunction_text(dec: dict, target: str = "coreml") -> str:
    """How to pick a function of a multifunction CoreML / Core AI decoder (empty for other decoders)."""
    multi = dec.get("multifunction")
    if not multi:
        return ""
    files = sorted({v["file"] for v in dec["variants"].values()})
    names = ", ".join(f"`{v['signature']}` (K = {k})" for k, v in dec["variants"].items())
    if target == "coreai":
        return (f"\n## Multifunction decoder\n`{'`, `'.join(files)}` is one multifunction Core AI asset with the "
                f"functions {names}; they share one copy of the weights. The default function is "
                f"`{multi['default_function']}`. Requires {multi['min_os']}. Python (coreai-core): "
                "`async with AIModelAsset.load(path).executable() as m: f = m.load_function(\"decoder_k16\")`; "
                "the encoder's function is `main`.\n")
    return (f"\n## Multifunction decoder\n`{'`, `'.join(files)}` is one multifunction ML program with the functions "
            f"{names}; they share one copy of the weights. The default function is `{multi['default_function']}`. "
            f"Requires {multi['min_os']}. Swift: `let cfg = MLModelConfiguration(); cfg.functionName = "
            f"\"{dec['variants'][max(dec['variants'], key=int)]['signature']}\"` before loading; Python (macOS): "
            f"`coremltools.models.MLModel(path, function_name=...)`.\n")


def _runtime_text(manifest: dict) -> str:
    """What the phone needs beyond the minimum OS (ExecuTorch: runtime release, delegate, how to call)."""
    needs = manifest.get("runtime_requirements")
    if not needs:
        return ""
    return "\n## What the app needs\n" + "\n".join(f"- {k}: {v}" for k, v in needs.items()) + "\n"
def _known_issues_text(dec: dict) -> str:
    """Runtime/compiler problems the export works around, written as upstream bug reports."""
    issues = dec.get("known_issues") or []
    if not issues:
        return ""
    parts = ["\n## Known issues"]
    for i in issues:
        parts.append(f"\n### {i['title']}\nVersions: {i['versions']}.\n\nSmallest reproduction:\n```python\n"
                     f"{i['reproduction']}\n```\nExpected: {i['expected']}.\n\nGot: {i['got']}.\n\n"
                     f"Workaround in this package: {i['workaround']}.\n")
    return "\n".join(parts)


def _w8a8_text(manifest: dict) -> str:
    """The W8A8 section: what is int8, what stays float, where the scales are."""
    plan = manifest.get("precision_plan", {})
    if "layer_counts" not in plan or "recipe" not in plan:
        return _mixed_text(plan)
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in plan["layer_counts"].items())
    reasons = "\n".join(f"- {r['layers']} layers float: {r['reason']}" for r in plan["keep_float"] if "layers" in r)
    return (f"\n## W8A8 (Q-TinySAM recipe)\nRecipe layers by what these files hold: {counts}. The recipe's scales "
            f"are in `{plan['recipe']['scales_file']}`; the manifest's `precision_plan.layers` names every layer.\n"
            f"Weights: {plan['applied']['weights']}.\nActivations: {plan['applied']['activations']}.\n{reasons}\n")


def _mixed_text(plan: dict) -> str:
    """The measured mixed plan section: modes, measured accuracy, speed (or why it is not measurable here)."""
    if plan.get("name") != "mixed-measured-v2":
        return ""
    m, acc, speed = plan["measured"], plan["accuracy"], plan["speed"]
    modes = ", ".join(f"{k}: {v}" for k, v in sorted(m["mode_counts"].items()))
    lat = (f"predicted encoder {m['latency_ms']} ms at {speed['anchors']['image_size']} px "
           f"({m['latency_ratio']:.3f} x fp32; {speed['note']})" if speed["measured"] else f"speed {speed['note']}")
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in plan.get("layer_counts", {}).items())
    return (f"\n## Mixed precision plan ({plan['name']})\nLayer groups by mode: {modes}"
            + (f"; layers as these files hold them: {counts}" if counts else "") + ".\n"
            f"Accuracy: mask IoU drop {m['iou_drop']:.4f} vs the float model ({acc['data']}, {acc['image_size']} px). "
            f"Speed: {lat}.\nBudget: {plan['budget']['kind'].replace('_', ' ')} <= {plan['budget']['limit']:g}; "
            f"the manifest's `precision_plan` lists every measured plan, the frontier and each group's costs "
            f"(plot: `{plan['plot']}`).\n")


def render_readme(manifest: dict) -> str:
    """Markdown README describing how to call the package, step by step."""
    model, pre, post, prompts = manifest["model"], manifest["preprocess"], manifest["postprocess"], manifest["prompts"]
    enc, dec = manifest["models"]["encoder"], manifest["models"]["decoder"]
    trained = "" if model.get("trained") else (
        "\n> **Untrained weights.** This package was built from a seeded, untrained model to exercise the "
        "pipeline. Its masks are meaningless; rebuild with `--checkpoint` for real use.\n")
    methods = str(dec.get("packaging", "")).startswith("methods")  # variants are methods of one program
    entry = "function" if dec.get("multifunction") else "method" if methods else "signature"
    names = ("ExecuTorch methods take their inputs by position, named `input_N` / `output_N` here in call order; "
             if methods else "")
    variants = "\n".join(
        f"- K = {k}: file `{v['file']}`" + (f", {entry} `{v['signature']}`" if v.get("signature") else "")
        for k, v in dec["variants"].items())
    parity = manifest.get("parity", {})
    metrics = parity.get("metrics", {})
    parity_lines = "\n".join(f"- {k}: {v:.6g}" if isinstance(v, float) else f"- {k}: {v}"
                             for k, v in metrics.items())
    extra = ""
    if "sam_onnx" in manifest["models"]:
        extra = ("\n## SAM-compatible decoder\n`decoder_sam_onnx.onnx` has SAM's official ONNX signature "
                 "(`image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size` -> "
                 "`masks, iou_predictions, low_res_masks`), dynamic N, masks upsampled to `orig_im_size` in the "
                 "graph. Use it with existing SAM ONNX front ends.\n")
    shared = dec.get("weights")
    if shared:
        extra += (f"\n## Shared decoder weights\nThe decoder graphs ({', '.join(f'`{f}`' for f in shared['shared_by'])}) "
                  f"store their weights once, in `{shared['file']}` (ONNX external data: every graph points at the "
                  "same offsets). Keep it in the same directory as the graphs; ONNX Runtime loads it by itself.\n")
    extra += _multifunction_text(dec, manifest["target"])
    extra += _runtime_text(manifest)
    extra += _known_issues_text(dec)
    extra += _w8a8_text(manifest)
    fq = parity.get("fake_quant")
    if fq:
        parity_lines += (f"\n\nAgainst {fq['reference']} (passed: {fq['passed']}); thresholds {fq['thresholds']}.\n"
                         + "\n".join(f"- {k}: {v:.6g}" if isinstance(v, float) else f"- {k}: {v}"
                                      for k, v in fq["metrics"].items()))
    return f"""# {model['name']} for {manifest['target']} ({manifest['precision']})
{trained}
Minimum platform: {manifest['min_os']}. Precision plan: `{manifest['precision_plan'].get('name')}`.
Check integrity with `python cli.py verify <this directory>`.

## Files
- `{enc['file']}`: image encoder, run once per image.
- batched prompt decoder, K prompts per call, {prompts['slots']} point slots per prompt:
{variants}

## 1. Preprocess the image
{_preprocess_code(pre)}

## 2. Encoder
{_io_table(enc['inputs'])}

{_io_table(enc['outputs'])}

## 3. Prompts -> decoder inputs
{_prompt_code(prompts, pre)}

Labels: {", ".join(f"{k} = {v}" for k, v in prompts['labels'].items())}.

{_io_table(dec['inputs'])}

{_io_table(dec['outputs'])}

Tensor names are as the runtime sees them (LiteRT signatures use `args_N` / `output_N`; {names}the table
gives each one's meaning).

## 4. Postprocess
{_post_code(post, prompts, pre)}
{extra}
## Parity with the PyTorch reference
Measured at build time (passed: {parity.get('passed')}); thresholds {parity.get('thresholds')}.
{parity_lines}
"""

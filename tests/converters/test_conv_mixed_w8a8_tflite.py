"""LiteRT W8A8 with the recipe's activation scales: the exported graph follows the fake-quant model's scales."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch


@pytest.mark.slow  # a LiteRT float conversion of the encoder (40+ s) and two LiteRT quantizations
def test_litert_w8a8_follows_fake_quant(tiny_model, tmp_path):
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    from converters.backends.litert.w8a8_quantize import quantize_tflite_w8a8
    from converters.logs import quiet
    from converters.wrappers import EncoderWrapper
    from tinysam.quant.calibrate import load_calibration_images, make_samples
    from tinysam.quant.qmodel import quant_layers, quantize_model, set_quant
    from tinysam.quant.search import SearchConfig, calibrate_model

    model, _ = tiny_model
    imgs = load_calibration_images(None, 6)
    cal, held = make_samples(model, imgs[:4]), make_samples(model, imgs[4:])
    q = quantize_model(model, "w8a8")
    calibrate_model(q, cal, SearchConfig(n_candidates=20, rounds=1), progress=False)
    wrong = copy.deepcopy(q)
    for layer in quant_layers(wrong).values():
        layer.a_scale.mul_(0.25)  # activation scales the recipe did not choose: LiteRT must clip where q does not
    src = tmp_path / "enc.tflite"
    with quiet():
        litert_torch.convert(EncoderWrapper(model).eval(), (cal[0].image,)).export(str(src))
    samples = [{"args_0": s.image.numpy()} for s in cal]
    info = quantize_tflite_w8a8(src, tmp_path / "ours.tflite", q, samples)
    assert info["layers"] > 30
    quantize_tflite_w8a8(src, tmp_path / "wrong.tflite", wrong, samples)
    set_quant(q, True)
    for layer in quant_layers(q).values():  # LiteRT: attention products float, twin-uniform inputs per row
        if layer.kind == "matmul":
            layer.quant_enabled = False
        elif layer.a_kind != "uniform":  # int8 weights, input quantized per row at run time
            layer.act_dynamic = True

    def error(path) -> float:  # noqa: ANN001
        run = Interpreter(str(path), num_threads=1).get_signature_runner()
        errs = []
        for s in held:
            with torch.no_grad():
                fq = q.encode_image(s.image).numpy()
            errs.append(np.abs(next(iter(run(args_0=s.image.numpy()).values())) - fq).mean())
        return float(np.mean(errs))

    ours, other = error(tmp_path / "ours.tflite"), error(tmp_path / "wrong.tflite")
    # measured at 128 (untrained, bundled photos): 0.076 with the recipe's scales; 0.14 when LiteRT's own
    # calibrator chose the output ranges (it keeps and copies every intermediate, see output_ranges)
    assert ours < 0.11 and ours < 0.8 * other, (ours, other)
    assert any("int8" in d["dtype"].__name__ for d in Interpreter(str(tmp_path / "ours.tflite")).get_tensor_details())

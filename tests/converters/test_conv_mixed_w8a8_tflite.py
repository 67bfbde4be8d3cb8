"""LiteRT W8A8 with the recipe's activation scales: closer to the fake-quant model than to float."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.mark.slow  # a LiteRT float conversion of the encoder (40+ s) and a LiteRT calibration
def test_litert_w8a8_follows_fake_quant(tiny_model, tmp_path):
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    from converters.tflite_export import quiet
    from converters.tflite_w8a8 import quantize_tflite_w8a8
    from converters.wrappers import EncoderWrapper
    from tinysam.quant.calibrate import load_calibration_images, make_samples
    from tinysam.quant.qmodel import quant_layers, quantize_model, set_quant
    from tinysam.quant.search import SearchConfig, calibrate_model

    model, _ = tiny_model
    imgs = load_calibration_images(None, 6)
    cal, held = make_samples(model, imgs[:4]), make_samples(model, imgs[4:])
    q = quantize_model(model, "w8a8")
    calibrate_model(q, cal, SearchConfig(n_candidates=20, rounds=1), progress=False)
    src, dst = tmp_path / "enc.tflite", tmp_path / "enc_w8a8.tflite"
    with quiet():
        litert_torch.convert(EncoderWrapper(model).eval(), (cal[0].image,)).export(str(src))
    info = quantize_tflite_w8a8(src, dst, q, [{"args_0": s.image.numpy()} for s in cal])
    assert info["layers"] > 30
    set_quant(q, True)
    for layer in quant_layers(q).values():  # what LiteRT keeps float: attention products, twin-uniform inputs
        if layer.kind == "matmul" or layer.a_kind != "uniform":
            layer.quant_enabled = False
    it = Interpreter(str(dst), num_threads=1)
    run = it.get_signature_runner()
    err_fq, err_fl = [], []
    for s in held:
        with torch.no_grad():
            fq, fl = q.encode_image(s.image).numpy(), model.encode_image(s.image).numpy()
        got = next(iter(run(args_0=s.image.numpy()).values()))
        err_fq.append(np.abs(got - fq).mean())
        err_fl.append(np.abs(got - fl).mean())
    # measured at 128 (untrained, bundled photos): 0.165 vs 0.170; LiteRT's own min/max calibration 0.199
    assert np.mean(err_fq) < np.mean(err_fl), (err_fq, err_fl)
    assert any("int8" in d["dtype"].__name__ for d in it.get_tensor_details())

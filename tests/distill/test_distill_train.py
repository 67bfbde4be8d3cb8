"""Training-loop tests: exact resume, the CLI command, the loss going down, and real learning.

Default run: exact resume, the CLI, a loss-falls smoke test and a fast "the decoder really learns"
test. The learning tests measure mask IoU, not the loss: a random decoder can cut the focal + dice
loss from ~3.5 to ~1.0 just by predicting background everywhere, which is what a 60-step run at
lr 3e-4 did (box mIoU stayed at ~0.1, the share of the frame one all-foreground token covers).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinysam.distill import TrainConfig, evaluate, train


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _cfg(data, out, teacher, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), teacher="mobilesam", teacher_checkpoint=str(teacher),
                image_size=128, prompts_per_image=2, max_refine_rounds=1, lr=3e-4, progress=False,
                cache_dir=str(out.parent / "cache"))
    base.update(kw)
    return TrainConfig(**base)


def _metrics(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        for key in [k for k in r if k == "seconds" or k.endswith("_s") or k.endswith("_per_s")]:
            r.pop(key)
    return rows


def test_resume_is_exact(tmp_path, sa1b_train, teacher_ckpt):
    straight = train(_cfg(sa1b_train, tmp_path / "a", teacher_ckpt, steps=2))
    train(_cfg(sa1b_train, tmp_path / "b", teacher_ckpt, steps=1))
    with pytest.raises(ValueError, match="already holds a run"):
        train(_cfg(sa1b_train, tmp_path / "b", teacher_ckpt, steps=2))
    resumed = train(_cfg(sa1b_train, tmp_path / "b", teacher_ckpt, steps=2), resume=True)
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert {"embedding", "token", "output", "hmw_mean", "mask", "iou"} <= set(straight)
    a = _weights(tmp_path / "a" / "student.safetensors")
    b = _weights(tmp_path / "b" / "student.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a different seed gives different weights (the check above can fail)
    other = train(_cfg(sa1b_train, tmp_path / "c", teacher_ckpt, steps=1, seed=5))
    assert other["weights_sha256"] != straight["weights_sha256"]


def test_cli_distill_runs_and_switches_parts(tmp_path, sa1b_train, teacher_ckpt):
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "cli_run"
    res = CliRunner().invoke(main, [
        "distill", "--teacher", "mobilesam", "--teacher-checkpoint", str(teacher_ckpt), "--student", "tinysam",
        "--data", str(sa1b_train), "--out", str(out), "--steps", "1", "--image-size", "128",
        "--prompts-per-image", "2", "--no-hard-prompts", "--no-hard-mask-weighting", "--decoder-lr", "1e-3"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hard_prompts"] is False and cfg["hard_mask_weighting"] is False and cfg["decoder_lr"] == 1e-3
    assert "hmw_mean" not in _metrics(out)[0]
    res = CliRunner().invoke(main, ["distill", "--data", str(sa1b_train), "--out", str(tmp_path / "x"), "--stage", "kd"])
    assert res.exit_code == 1 and "teacher checkpoint" in res.output


def test_smoke_gt_loss_falls_on_one_image(tmp_path, sa1b_train):
    one = tmp_path / "one"
    one.mkdir()
    for f in sorted(sa1b_train.iterdir())[:2]:  # one (image, json) pair
        (one / f.name).write_bytes(f.read_bytes())
    train(_cfg(one, tmp_path / "gt", "unused", stage="gt", steps=8, lr=1e-3, decoder_lr=1e-3, prompts_per_image=8,
               hard_prompts=False, teacher_checkpoint=None, box_fraction=1.0, box_noise=0.0))
    rows = _metrics(tmp_path / "gt")
    assert rows[-1]["mask"] < 0.6 * rows[0]["mask"]


def test_warmup_stage_trains_only_the_prompt_encoder_and_decoder(tmp_path, sa1b_train):
    from tinysam import build_sam

    train(_cfg(sa1b_train, tmp_path / "warm", "unused", stage="warmup", steps=2, teacher_checkpoint=None,
               hard_prompts=False, decoder_lr=1e-3))
    before = build_sam("tinysam", image_size=128, seed=0).state_dict()
    after = _weights(tmp_path / "warm" / "student.safetensors")
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"prompt_encoder", "mask_decoder"}, changed  # BatchNorm statistics included
    assert _metrics(tmp_path / "warm")[0]["prompts"] == 2  # prompts_per_image random shapes per image


@pytest.mark.slow
def test_warmup_makes_a_fresh_decoder_follow_its_prompt(tmp_path, sa1b_train):
    """After the warm-up, boxes of different shapes give different masks that fit the shapes."""
    from tinysam import build_sam
    from tinysam.distill.evaluate import iou
    from tinysam.distill.prompts import boxes_from_masks
    from tinysam.distill.shapes_warmup import random_shapes

    train(_cfg(sa1b_train, tmp_path / "warm", "unused", stage="warmup", student="mobilesam", steps=300,
               teacher_checkpoint=None, hard_prompts=False, decoder_lr=1e-3, prompts_per_image=16,
               box_fraction=1.0, focal_weight=1.0))
    shapes = random_shapes(8, (128, 128), 128, np.random.default_rng(7))

    def fit_and_cross(model) -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            emb = model.encode_image(model.preprocess(torch.full((1, 3, 128, 128), 128.0)))
            low, _ = model.decode_prompts(emb, boxes_from_masks(shapes).view(-1, 2, 2), torch.tensor([[2.0, 3.0]] * 8))
        pred = (model.postprocess_masks(low[:, :1], (128, 128), (128, 128))[:, 0] > 0).numpy()
        fit = np.mean([iou(p, g) for p, g in zip(pred, shapes.numpy())])
        return fit, np.mean([iou(pred[i], pred[j]) for i in range(8) for j in range(i + 1, 8)])

    fit, cross = fit_and_cross(build_sam("mobilesam", tmp_path / "warm" / "student.safetensors", image_size=128))
    fit0, _ = fit_and_cross(build_sam("mobilesam", image_size=128, seed=0))
    assert fit > 0.4 and fit > fit0 + 0.2 and cross < 0.3, (fit, fit0, cross)


@pytest.mark.slow
def test_decoder_learns_boxes_on_fixed_embeddings():
    """The prompt path (frames, targets, losses, token choice) lets a random decoder learn: box IoU
    goes from ~0.1 to > 0.5 on fixed random image embeddings of 2 synthetic images."""
    from tinysam import build_sam
    from tinysam.distill.kd_step import decode, low_res_targets
    from tinysam.distill.losses import compute_losses
    from tinysam.distill.prompts import candidate_tokens, sample_prompts

    torch.manual_seed(0)
    model = build_sam("tinysam", image_size=64, seed=0).train()
    cfg = TrainConfig(data="d", out="o", stage="gt", hard_prompts=False)
    yy, xx = np.mgrid[:64, :64]
    gts = []
    for seed in range(2):
        rng = np.random.default_rng(seed)
        gts.append(torch.from_numpy(np.stack([((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1 for cy, cx, ry, rx in
                                              rng.uniform([12, 12, 5, 5], [52, 52, 14, 14], (3, 4))])))
    with torch.no_grad():
        embs = [model.encode_image(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(s)))
                for s in range(2)]
    params = list(model.mask_decoder.parameters()) + list(model.prompt_encoder.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    ious = []
    for step in range(120):
        gt, emb = gts[step % 2], embs[step % 2]
        p = sample_prompts(gt, gen, box_fraction=1.0, hard_prompts=False, max_refine_rounds=0, box_noise=0.0,
                           box_noise_max=20, always_multimask=True)
        parts = compute_losses(cfg, decode(model, emb, p.coords, p.labels, False), low_res_targets(gt),
                               candidate_tokens(p, True))
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        ious.append(float(parts["student_iou"]))
    assert np.mean(ious[:5]) < 0.3 and np.mean(ious[-10:]) > 0.5, (ious[:5], ious[-10:])


@pytest.mark.slow
def test_sami_stage_reduces_reconstruction_error(tmp_path, sa1b_train, teacher_ckpt):
    last = train(_cfg(sa1b_train, tmp_path / "sami", teacher_ckpt, stage="sami", steps=6, lr=1e-3))
    rows = _metrics(tmp_path / "sami")
    assert rows[-1]["sami_mse"] < rows[0]["sami_mse"] and last["step"] == 6


def test_smoke_story_warmup_then_gt_beats_the_untrained_student(tmp_path, sa1b_train, sa1b_heldout, one_thread):
    """The distillation story in small: a TinySAM trained from scratch (warm-up, then ground truth) on
    four images follows its prompt and beats its untrained self on held-out images."""
    from tinysam import build_sam
    from tinysam.distill.data import check_disjoint

    check_disjoint(sa1b_train, sa1b_heldout)
    common = dict(teacher_checkpoint=None, hard_prompts=False, lr=2e-4, focal_weight=1.0, image_size=64,
                  freeze_batchnorm=True, bn_calibration_images=4)
    train(_cfg(sa1b_train, tmp_path / "warm", "unused", stage="warmup", steps=200, prompts_per_image=32,
               decoder_lr=1e-3, **common))
    # a short ground-truth phase at the warm-up's 1e-3 pulls the decoder back towards one generic mask
    train(_cfg(sa1b_train, tmp_path / "gt", "unused", stage="gt", steps=40, lr_schedule="cosine", prompts_per_image=16,
               student_checkpoint=str(tmp_path / "warm" / "student.safetensors"), **common))
    rows = _metrics(tmp_path / "gt")
    assert np.mean([r["mask"] for r in rows[-10:]]) < np.mean([r["mask"] for r in rows[:10]])
    untrained = evaluate(build_sam("tinysam", image_size=64, seed=0), sa1b_heldout)
    trained = evaluate(build_sam("tinysam", tmp_path / "gt" / "student.safetensors", image_size=64), sa1b_heldout)
    # measured with per-image random streams (seed 0 / seed 1): box 0.142 / 0.129 vs 0.086, 1 click 0.181 /
    # 0.116 vs 0.082, box cross-IoU 0.12 / 0.35 vs 0.84 (the earlier shared per-step stream measured box 0.24,
    # 1 click 0.23: on 2 held-out images and 5 masks the draw of masks and prompts moves these by ~0.1)
    assert trained["box"] > untrained["box"] + 0.03 and trained["1pt"] > untrained["1pt"] + 0.03, (trained, untrained)
    assert trained["box_cross_iou"] < 0.5, trained

"""Unit tests of the distillation parts: prompts, losses, data order, teacher cache, SAMI, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinysam.distill.config import TrainConfig
from tinysam.distill.data import list_records, load_sample, step_positions, stream_index
from tinysam.distill.losses import dice_loss, focal_loss, hard_mask_weights, token_l1
from tinysam.distill.prompts import boxes_from_masks, candidate_tokens, sample_prompts, to_slots
from tinysam.distill.sami import SamiDecoder, hide_patches, random_visible
from tinysam.distill.teacher_cache import TeacherCache


def _disc_masks(k: int = 3, s: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    return torch.stack([((yy - 20 - 5 * i) ** 2 + (xx - 30) ** 2) < (8 + 2 * i) ** 2 for i in range(k)])


def test_slots_layout_points_pad_empty_and_box():
    pts = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [0.0, 0.0]]])
    coords, labels = to_slots(pts, torch.tensor([2, 1]), torch.tensor([False, True]),
                              torch.tensor([[0.0, 0, 0, 0], [7.0, 8.0, 9.0, 10.0]]), 4)
    assert labels.tolist() == [[1, 1, -1, -2], [2, 3, -2, -2]]
    assert coords[0, :2].tolist() == [[1, 2], [3, 4]] and coords[1, :2].tolist() == [[7, 8], [9, 10]]


def test_hard_rounds_add_points_in_gt_minus_prediction():
    gt = _disc_masks()
    calls = []

    def predict_nothing(coords, labels):  # a model that predicts background everywhere
        calls.append(coords.shape[0])
        k = coords.shape[0]
        return torch.full((k, 4, 16, 16), -5.0), torch.zeros(k, 4)

    p = sample_prompts(gt, torch.Generator().manual_seed(0), box_fraction=0.0, hard_prompts=True,
                       max_refine_rounds=4, box_noise=0.0, box_noise_max=20, predict=predict_nothing)
    assert p.coords.shape == (3, 6, 2) and calls
    assert int(p.n_points.max()) > 1
    for k in range(3):
        n = int(p.n_points[k])
        assert p.labels[k, :n].eq(1).all() and p.labels[k, n] == -1 and p.labels[k, n + 1:].eq(-2).all()
        for x, y in p.coords[k, :n].long().tolist():
            assert gt[k, y, x]


def test_no_hard_prompts_means_one_click_and_boxes_are_tight():
    gt = _disc_masks()
    p = sample_prompts(gt, torch.Generator().manual_seed(1), box_fraction=0.0, hard_prompts=False,
                       max_refine_rounds=9, box_noise=0.0, box_noise_max=20)
    assert p.n_points.tolist() == [1, 1, 1] and p.labels.shape == (3, 2)
    b = boxes_from_masks(gt)
    ys, xs = torch.nonzero(gt[0], as_tuple=True)
    assert b[0].tolist() == [xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()]


def test_candidate_tokens_follow_sam_and_tinysam_rules():
    gt = _disc_masks(2)
    p = sample_prompts(gt, torch.Generator().manual_seed(0), box_fraction=0.0, hard_prompts=False,
                       max_refine_rounds=0, box_noise=0.0, box_noise_max=20)
    assert candidate_tokens(p, False).tolist() == [[False, True, True, True]] * 2
    p.is_box[:] = True
    assert candidate_tokens(p, False).tolist() == [[True, False, False, False]] * 2
    assert candidate_tokens(p, True).tolist() == [[False, True, True, True]] * 2


def test_hard_mask_weight_values():
    h = hard_mask_weights(torch.tensor([0.8, 0.8, 0.4]), torch.tensor([0.8, 0.4, 0.8]), eps=0.0)
    assert h[0] == pytest.approx(0.5) and h[1] > 0.5 > h[2]


def test_focal_dice_prefer_the_right_mask_and_token_l1_skips_empty_slots():
    t = _disc_masks(1).float()[None]
    good, bad = (t * 20 - 10), (10 - t * 20)
    assert focal_loss(good, t) < focal_loss(bad, t) and dice_loss(good, t) < dice_loss(bad, t)
    a, b = torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)
    b[0, 2] = 100.0
    assert token_l1(a, b, torch.tensor([[True, True, False]])) == 0
    assert token_l1(a, b, torch.tensor([[True, True, True]])) > 0


def test_stream_order_is_a_permutation_per_epoch_and_splits_ranks():
    n = 5
    epoch0 = [stream_index(i, n, seed=3) for i in range(n)]
    assert sorted(epoch0) == list(range(n))
    assert [stream_index(i, n, 3) for i in range(n)] == epoch0
    assert step_positions(2, rank=1, world=2, per_rank=3) == [15, 16, 17]


def test_load_sample_frames(sa1b_train):
    from tinysam import get_config

    recs = list_records(sa1b_train)
    assert len(recs) == 4 and len(list_records(sa1b_train, 0.5, seed=0)) == 2
    s = load_sample(recs[0], get_config("tinysam", 128), 2, np.random.default_rng(0))
    assert s.gt.shape[1:] == (128, 128) and 1 <= s.gt.shape[0] <= 2
    assert max(s.input_size) == 128 and s.image.shape[2:] == s.input_size
    assert len(s.gt_original) == s.gt.shape[0] and s.gt_original[0].shape == s.original_size


def test_teacher_cache_keys_grows_and_refuses_other_checkpoint(tmp_path, sa1b_train):
    recs = list_records(sa1b_train)
    calls = []

    def embed(rec):
        calls.append(rec.image_id)
        return torch.full((1, 256, 8, 8), float(len(calls)))

    cache = TeacherCache(tmp_path, "mobilesam", "a" * 64, 128)
    assert cache.build(recs[:2], embed) == 2 and cache.build(recs, embed) == 2 and cache.build(recs, embed) == 0
    assert len(calls) == 4 and cache.get(recs[3].image_id).shape == (1, 256, 8, 8)
    assert cache.get(recs[0].image_id)[0, 0, 0, 0] == 1.0 and cache.get(recs[3].image_id).dtype == torch.float32
    assert TeacherCache(tmp_path, "mobilesam", "b" * 64, 128).missing(recs) == recs
    assert TeacherCache(tmp_path, "mobilesam", "a" * 64, 256).missing(recs) == recs
    with pytest.raises(KeyError):
        cache.get("nope")


def test_sami_visible_ratio_and_decoder_shapes():
    vis = random_visible(8, 0.75, torch.Generator().manual_seed(0))
    assert int(vis.sum()) == 16
    x = torch.ones(1, 3, 128, 128)
    assert float(hide_patches(x, vis, 16).mean()) == pytest.approx(0.25)
    dec = SamiDecoder(256, 8)
    out = dec(torch.randn(1, 256, 8, 8), vis)
    assert out.shape == (1, 256, 8, 8)


@pytest.mark.parametrize("bad", [{"stage": "x"}, {"steps": 0}, {"data_fraction": 0.0}, {"teacher_checkpoint": None},
                                 {"lr_schedule": "linear"}, {"lr_final_fraction": 1.5}])
def test_config_rejects_bad_values(bad):
    kw = dict(data="d", out="o", teacher_checkpoint="t.pt")
    kw.update(bad)
    with pytest.raises(ValueError):
        TrainConfig(**kw).validate()


def test_decode_prompts_return_tokens_matches_plain_call_and_transformer_output():
    from tinysam import build_sam

    model = build_sam("tinysam", image_size=64, seed=0)
    emb = torch.randn(1, 256, 4, 4, generator=torch.Generator().manual_seed(0))
    coords = torch.tensor([[[10.0, 20.0], [0.0, 0.0], [0.0, 0.0]], [[5.0, 6.0], [40.0, 50.0], [0.0, 0.0]]])
    labels = torch.tensor([[1.0, -1.0, -2.0], [2.0, 3.0, -2.0]])
    seen = {}

    def keep_queries(_module, _inputs, outputs) -> None:
        seen["hs"] = outputs[0]

    hook = model.mask_decoder.transformer.register_forward_hook(keep_queries)
    with torch.no_grad():
        low, iou, tokens = model.decode_prompts(emb, coords, labels, return_tokens=True)
        low2, iou2 = model.decode_prompts(emb, coords, labels)
    hook.remove()
    assert tokens.shape == (2, 5 + 3, 256)
    assert torch.equal(tokens, seen["hs"]) and torch.equal(low, low2) and torch.equal(iou, iou2)


def test_records_read_minisa_png_and_skip_its_manifest(tmp_path):
    from calibration_data.minisa import generate_minisa
    from tinysam import get_config

    split = generate_minisa(tmp_path, 2, image_size=64, seed=0, split="val", progress=False)
    recs = list_records(split)
    assert len(recs) == 2 and all(r.image_path.suffix == ".png" for r in recs)
    assert list_records(tmp_path / "val") == recs and (tmp_path / "dataset.json").exists()
    s = load_sample(recs[0], get_config("tinysam", 64), 8, np.random.default_rng(0), 1)
    assert s.gt.shape[0] >= 1 and s.gt_original[0].shape == s.original_size == (64, 64)


def test_same_images_in_train_and_heldout_are_refused(tmp_path):
    from calibration_data.minisa import generate_minisa
    from tinysam.distill.data import check_disjoint

    generate_minisa(tmp_path / "a", 2, image_size=48, seed=0, split="train", progress=False)
    generate_minisa(tmp_path / "a", 2, image_size=48, seed=0, split="val", progress=False)  # same seed: copies
    generate_minisa(tmp_path / "b", 2, image_size=48, seed=1, split="val", progress=False)
    check_disjoint(tmp_path / "a" / "train", tmp_path / "b" / "val")
    with pytest.raises(ValueError, match="held-out"):
        check_disjoint(tmp_path / "a" / "train", tmp_path / "a" / "val")


def test_decoder_lr_builds_two_adam_groups():
    from tinysam import build_sam
    from tinysam.distill.trainer import param_groups

    model = build_sam("tinysam", image_size=64, seed=0)
    enc, rest = param_groups(model, TrainConfig(data="d", out="o", lr=1e-4, decoder_lr=1e-3))
    assert enc["lr"] == 1e-4 and rest["lr"] == 1e-3
    assert len(enc["params"]) + len(rest["params"]) == len(list(model.parameters()))
    assert param_groups(model, TrainConfig(data="d", out="o", lr=2e-4))[1]["lr"] == 2e-4


def test_frozen_batchnorm_keeps_running_stats_while_the_rest_trains():
    from tinysam import build_sam
    from tinysam.distill.trainer import set_train_mode

    model = build_sam("tinysam", image_size=64, seed=0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    set_train_mode(model, freeze_batchnorm=True)
    assert model.training and not any(bn.training for bn in bns)
    before = bns[0].running_mean.clone()
    model.image_encoder(torch.randn(1, 3, 64, 64) * 5 + 3)
    assert torch.equal(bns[0].running_mean, before)
    set_train_mode(model, freeze_batchnorm=False, fixed_encoder=True)
    assert not model.image_encoder.training and not any(bn.training for bn in bns) and model.mask_decoder.training
    set_train_mode(model, freeze_batchnorm=False)
    assert all(bn.training for bn in bns)
    model.image_encoder(torch.randn(1, 3, 64, 64) * 5 + 3)
    assert not torch.equal(bns[0].running_mean, before)


def test_fixed_encoder_is_frozen_and_left_out_of_adam():
    from tinysam import build_sam
    from tinysam.distill.trainer import param_groups

    model = build_sam("tinysam", image_size=64, seed=0)
    groups = param_groups(model, TrainConfig(data="d", out="o", decoder_lr=1e-3, train_encoder=False))
    assert len(groups) == 1 and groups[0]["lr"] == 1e-3
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert len(groups[0]["params"]) == len(list(model.prompt_encoder.parameters())) + len(
        list(model.mask_decoder.parameters()))


def test_batchnorm_calibration_averages_per_image_statistics_then_freezes():
    from tinysam import build_sam
    from tinysam.distill.trainer import calibrate_batchnorm, set_train_mode

    model = set_train_mode(build_sam("tinysam", image_size=64, seed=0), freeze_batchnorm=True)
    first = next(m for m in model.image_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    hook = first.register_forward_pre_hook(lambda mod, args: seen.append(args[0].mean(dim=(0, 2, 3))))
    images = [torch.randn(1, 3, 64, 64) * (1 + i) + i for i in range(3)]
    assert calibrate_batchnorm(model, iter(images)) == 3
    hook.remove()
    torch.testing.assert_close(first.running_mean, torch.stack(seen).mean(0), rtol=1e-5, atol=1e-6)
    assert int(first.num_batches_tracked) == 3 and first.momentum == 0.1
    assert not first.training and model.training


def test_warmup_shapes_lie_in_the_image_area_and_mix_rectangles_and_ellipses():
    from tinysam.distill.shapes_warmup import random_shapes

    shapes = random_shapes(40, (48, 64), 64, np.random.default_rng(0))
    assert shapes.shape == (40, 64, 64) and shapes.dtype == torch.bool
    assert not shapes[:, 48:].any()  # padding rows stay empty
    areas = shapes.flatten(1).sum(1).float()
    assert (areas >= 36).all()  # sides >= 64 / 8
    fill = areas / torch.stack([(s.any(1).sum() * s.any(0).sum()).float() for s in shapes])
    assert (fill > 0.97).any() and ((fill > 0.6) & (fill < 0.85)).any()  # rectangles and ellipses (pi/4)
    again = random_shapes(40, (48, 64), 64, np.random.default_rng(0))
    assert torch.equal(shapes, again)


def test_cosine_schedule_starts_at_one_ends_at_the_final_fraction_and_falls():
    from tinysam.distill.trainer import lr_factor

    cfg = TrainConfig(data="d", out="o", steps=11, lr_schedule="cosine", lr_final_fraction=0.1)
    f = [lr_factor(cfg, t) for t in range(11)]
    assert f[0] == 1.0 and abs(f[-1] - 0.1) < 1e-12 and abs(f[5] - 0.55) < 1e-12
    assert all(a > b for a, b in zip(f, f[1:]))
    assert lr_factor(TrainConfig(data="d", out="o", steps=11), 7) == 1.0

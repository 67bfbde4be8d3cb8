"""The trainer at scale, checked on the CPU: batches equal one image per forward pass, bf16 autocast,
DataLoader workers change nothing, resume stays exact with batches and accumulation, the device rules,
and the `distill` command with --device cpu --precision bf16 --batch-size 4."""

from __future__ import annotations

import json

import pytest
import torch

from tinysam.distill import TrainConfig, train


def _cfg(data, out, teacher, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), teacher="mobilesam", teacher_checkpoint=str(teacher), image_size=128,
                prompts_per_image=3, max_refine_rounds=2, lr=3e-4, progress=False, device="cpu",
                cache_dir=str(out.parent / "cache"))
    base.update(kw)
    return TrainConfig(**base)


def _rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "student.safetensors"))


def test_a_batch_of_four_equals_four_single_image_passes(tmp_path, sa1b_train, teacher_ckpt, one_thread):
    """Same images, masks and prompts (hard prompts on, images with different mask counts padded with
    empty-slot rows): the step-0 loss agrees within 1e-4 and the updated weights nearly agree.

    BatchNorm is frozen (the shipped recipe): in training mode its statistics are those of the batch, so
    a batch of 4 normalizes differently from 4 single images, as in any batched training."""
    kw = dict(steps=1, freeze_batchnorm=True, bn_calibration_images=2)
    batched = train(_cfg(sa1b_train, tmp_path / "b4", teacher_ckpt, batch_size=4, **kw))
    single = train(_cfg(sa1b_train, tmp_path / "b1", teacher_ckpt, batch_size=1, grad_accum=4, **kw))
    rb, rs = _rows(tmp_path / "b4")[0], _rows(tmp_path / "b1")[0]
    assert rb["images"] == rs["images"] == 4 and rb["prompts"] == rs["prompts"]
    for key in ("total", "mask", "iou", "embedding", "token", "output", "hmw_mean"):
        assert abs(rb[key] - rs[key]) < 1e-4, (key, rb[key], rs[key])
    wb, ws = _weights(tmp_path / "b4"), _weights(tmp_path / "b1")
    assert max(float((wb[k].float() - ws[k].float()).abs().max()) for k in wb) < 1e-4
    assert batched["weights_sha256"] != single["weights_sha256"] or rb == rs  # summation order differs


def test_padding_rows_do_not_change_an_images_losses(sa1b_train):
    """An image alone and the same image padded to more prompt rows give the same per-image losses."""
    from tinysam import build_sam
    from tinysam.distill.data import list_records
    from tinysam.distill.device import Precision, image_generator
    from tinysam.distill.kd_step import batch_step
    from tinysam.distill.loader import collate, sample_for, to_device

    cfg = TrainConfig(data=str(sa1b_train), out="unused", stage="gt", prompts_per_image=3, max_refine_rounds=2)
    model = build_sam("tinysam", image_size=128, seed=0)
    rec = list_records(sa1b_train)[0]
    item = (0, sample_for(cfg, rec, model.config, 0), None)
    cpu = torch.device("cpu")
    losses = []
    for fixed in (None, 8):
        batch = to_device(collate([item], 128, fixed), model, cpu)
        assert batch.gt.shape[1] == (fixed or 3)
        with torch.no_grad():
            parts = batch_step(cfg, model, batch.x, batch.gt, batch.valid, [image_generator(0, 0, cpu)],
                               Precision("fp32", cpu).autocast)
        losses.append({k: float(v[0]) for k, v in parts.items()})
    assert losses[0].keys() == losses[1].keys()
    assert all(abs(losses[0][k] - losses[1][k]) < 1e-5 for k in losses[0]), losses


def test_bf16_autocast_runs_the_forward_in_bf16_on_the_cpu(tmp_path, sa1b_train, teacher_ckpt):
    from tinysam import build_sam
    from tinysam.distill.device import Precision

    model = build_sam("tinysam", image_size=128, seed=0)
    with Precision("bf16", torch.device("cpu")).autocast():
        emb = model.encode_image(torch.zeros(1, 3, 128, 128))
    assert emb.dtype == torch.bfloat16
    last = train(_cfg(sa1b_train, tmp_path / "bf16", teacher_ckpt, steps=2, batch_size=2, precision="bf16"))
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in _rows(tmp_path / "bf16"))
    fp32 = train(_cfg(sa1b_train, tmp_path / "fp32", teacher_ckpt, steps=2, batch_size=2))
    assert last["weights_sha256"] != fp32["weights_sha256"]  # bf16 really changed the arithmetic
    # the optimizer state and the weights stay fp32
    assert all(v.dtype == torch.float32 for v in _weights(tmp_path / "bf16").values() if v.is_floating_point())


def test_two_loader_workers_yield_the_same_batches_and_weights(tmp_path, sa1b_train, teacher_ckpt):
    from tinysam import build_sam
    from tinysam.distill.data import list_records
    from tinysam.distill.loader import make_loader

    cfg = _cfg(sa1b_train, tmp_path / "x", teacher_ckpt, stage="gt", steps=3, batch_size=2, teacher_checkpoint=None)
    model_cfg = build_sam("tinysam", image_size=128, seed=0).config
    records = list_records(sa1b_train)
    batches = {}
    for workers in (0, 2):
        cfg.num_workers = workers
        batches[workers] = list(make_loader(cfg, records, model_cfg, None, 1, 0, 1, pin=False))
    assert len(batches[0]) == len(batches[2]) == 2  # steps 1 and 2
    for a, b in zip(batches[0], batches[2]):
        assert a.positions == b.positions and a.image_ids == b.image_ids
        assert torch.equal(a.images, b.images) and torch.equal(a.gt, b.gt) and torch.equal(a.valid, b.valid)
    r0 = train(_cfg(sa1b_train, tmp_path / "w0", teacher_ckpt, steps=2, batch_size=2))
    r2 = train(_cfg(sa1b_train, tmp_path / "w2", teacher_ckpt, steps=2, batch_size=2, num_workers=2))
    assert r0["weights_sha256"] == r2["weights_sha256"]


def test_resume_is_exact_with_batches_accumulation_and_bf16(tmp_path, sa1b_train, teacher_ckpt):
    kw = dict(batch_size=2, grad_accum=2, precision="bf16")
    straight = train(_cfg(sa1b_train, tmp_path / "a", teacher_ckpt, steps=3, **kw))
    train(_cfg(sa1b_train, tmp_path / "b", teacher_ckpt, steps=1, **kw))
    resumed = train(_cfg(sa1b_train, tmp_path / "b", teacher_ckpt, steps=3, **kw), resume=True)
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    drop = ("seconds", "step_s", "data_s", "forward_s", "backward_s", "optimizer_s", "images_per_s", "prompts_per_s")
    clean = [{k: v for k, v in r.items() if k not in drop} for r in _rows(tmp_path / "a")]
    assert clean == [{k: v for k, v in r.items() if k not in drop} for r in _rows(tmp_path / "b")]
    with pytest.raises(ValueError, match="cannot resume: batch_size"):
        train(_cfg(sa1b_train, tmp_path / "b", teacher_ckpt, steps=4, batch_size=1, grad_accum=2,
                   precision="bf16"), resume=True)


def test_throughput_is_logged_per_step_and_summarized(tmp_path, sa1b_train, teacher_ckpt):
    last = train(_cfg(sa1b_train, tmp_path / "t", teacher_ckpt, steps=2, batch_size=2))
    row = _rows(tmp_path / "t")[-1]
    parts = row["data_s"] + row["forward_s"] + row["backward_s"] + row["optimizer_s"]
    assert 0 < parts <= row["step_s"] * 1.01 and row["images_per_s"] > 0 and row["prompts_per_s"] > 0
    summary = json.loads((tmp_path / "t" / "throughput.json").read_text())
    assert summary["device"] == "cpu" and summary["steps_timed"] == 1 and summary == {**summary, **last["throughput"]}


def test_device_and_precision_rules():
    from tinysam.distill.device import Precision, backend_for, resolve_device

    assert backend_for(torch.device("cpu")) == "gloo" and backend_for(torch.device("cuda", 0)) == "nccl"
    assert resolve_device("cpu").type == "cpu"
    for bad in ("gpu", "cuda:x", "cpu:1", "mps"):
        with pytest.raises(ValueError, match="device must be one of"):
            resolve_device(bad)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision must be one of"):
        Precision("int8", torch.device("cpu"))
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(data=".", out="o", stage="gt", precision="fp8").validate()


def test_cli_distill_cpu_bf16_batch_four_loss_falls(tmp_path, sa1b_train):
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "cli_bf16"
    res = CliRunner().invoke(main, [
        "distill", "--stage", "gt", "--student", "tinysam", "--data", str(sa1b_train), "--out", str(out),
        "--steps", "10", "--image-size", "64", "--prompts-per-image", "8", "--device", "cpu", "--precision", "bf16",
        "--batch-size", "4", "--lr", "1e-3", "--decoder-lr", "1e-3", "--focal-weight", "1", "--no-hard-prompts"])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert all(r["images"] == 4 for r in rows)
    assert sum(r["mask"] for r in rows[-3:]) / 3 < 0.8 * rows[0]["mask"], [r["mask"] for r in rows]
    bad = CliRunner().invoke(main, ["distill", "--stage", "gt", "--data", str(sa1b_train), "--out", str(tmp_path / "y"),
                                    "--device", "tpu"])
    assert bad.exit_code == 1 and "device must be one of" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_cli_bf16_batch_four_a_few_hundred_steps(tmp_path, sa1b_train):
    """The issue's acceptance run: 200 steps, --device cpu --precision bf16 --batch-size 4."""
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "long"
    res = CliRunner().invoke(main, [
        "distill", "--stage", "gt", "--student", "tinysam", "--data", str(sa1b_train), "--out", str(out),
        "--steps", "200", "--image-size", "64", "--prompts-per-image", "8", "--device", "cpu", "--precision", "bf16",
        "--batch-size", "4", "--lr", "1e-3", "--decoder-lr", "1e-3", "--focal-weight", "1"])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    first = sum(r["total"] for r in rows[:10]) / 10
    final = sum(r["total"] for r in rows[-10:]) / 10
    assert final < 0.6 * first, (first, final)

"""The benchmark harness in a tiny configuration: schema, positive numbers, ratios from the same run."""

from __future__ import annotations

import json

import pytest

from bench.peak import measure_matmul_peak, peak_share
from bench.run import BenchConfig, run_bench
from bench.sizes import with_fp32_ratios

SUITE_FILES = ("conversion", "sizes", "peak", "latency", "accuracy")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One real run: TinySAM at 64, ONNX fp32, 2 repeats (conversion in a subprocess)."""
    root = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig.quick_config(image_size=64, targets=("onnx",), precisions=("fp32",), repeats=2, warmup=1,
                                   accuracy_images=1, peak_sizes=(256,), verify=False, suites=SUITE_FILES, threads=1,
                                   shipped_weights=False,
                                   out_dir=str(root / "results"), benchmarks_md=str(root / "BENCHMARKS.md"),
                                   packages_dir=str(root / "packages"))
    res = run_bench(cfg)
    return cfg, res, root


def _load(root, name):
    return json.loads((root / "results" / f"{name}.json").read_text())


def test_every_suite_file_belongs_to_the_same_run(quick_run):
    cfg, res, root = quick_run
    run = _load(root, "run")
    for name in SUITE_FILES:
        assert _load(root, name)["run_id"] == run["run_id"] == res["meta"]["run_id"]
    assert run["meta"]["command"] == cfg.command()
    assert all(f in cfg.command() for f in ("--image-size 64", "--targets onnx", "--untrained", "--threads 1"))


def test_latency_ratios_are_computed_from_this_run(quick_run):
    _, _, root = quick_run
    lat, peak = _load(root, "latency"), _load(root, "peak")
    rows = lat["rows"]
    assert not lat["errors"]
    assert {(r["backend"], r["part"]) for r in rows} == {
        (b, p) for b in ("torch", "onnxruntime") for p in ("encoder", "decoder_k1", "decoder_k16")}
    base = {r["part"]: r["median_s"] for r in rows if r["backend"] == "torch"}
    for r in rows:
        assert r["median_s"] > 0 and r["min_s"] > 0 and len(r["times_s"]) == 2
        assert r["speedup_vs_torch_fp32"] == pytest.approx(base[r["part"]] / r["median_s"], rel=1e-12)
        assert r["rel_error"] < 1e-3  # fp32 export matches the reference
        if r["part"] == "encoder":
            assert lat["peak_gflops"] == peak["gflops_best"] > 0
            want = 2 * lat["encoder_macs"] / r["median_s"] / 1e9 / peak["gflops_best"]
            assert r["peak_share"] == pytest.approx(want, rel=1e-12) and r["peak_share"] > 0
        else:
            k = int(r["part"].removeprefix("decoder_k"))
            assert r["per_prompt_s"] == pytest.approx(r["median_s"] / k)


def test_sizes_conversion_and_accuracy_rows(quick_run):
    _, _, root = quick_run
    (size,) = _load(root, "sizes")["rows"]
    assert size["total_bytes"] == sum(size["files"].values()) > size["model_bytes"] > 0
    assert size["ratio_to_fp32"] == 1.0 and "encoder.onnx" in size["files"]
    (conv,) = _load(root, "conversion")["rows"]
    assert "error" not in conv, conv.get("error")
    assert conv["wall_s"] > conv["convert_s"] > 0 and conv["max_rss_bytes"] > 100e6
    acc = _load(root, "accuracy")
    assert [(r["backend"], r["precision"]) for r in acc["rows"]] == [("torch", "fp32"), ("onnxruntime", "fp32")]
    for r in acc["rows"]:
        assert r["instances"] > 0
        assert all(0.0 <= r[k] <= 1.0 for k in ("miou_1pt", "miou_3pt", "miou_box"))
    assert acc["rows"][1]["agreement_1pt"] > 0.99 and acc["rows"][1]["agreement_box"] > 0.99


def test_reports_targets_machine_and_plots(quick_run):
    _, res, root = quick_run
    assert all(t["status"] in ("PASS", "MISS", "N/A") and t["applies"] is False for t in res["targets"])
    assert any(t["target"].startswith("convert onnx/fp32") for t in res["targets"])
    md = (root / "BENCHMARKS.md").read_text()
    assert res["machine"]["cpu"] in md and res["meta"]["command"] in md and "## Latency" in md
    summary = (root / "results" / "summary.md").read_text()
    assert "| onnxruntime | fp32 | encoder |" in summary
    for png in ("accuracy_tradeoffs.png", "latency_speedup.png"):
        assert (root / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peak_and_ratio_helpers():
    p = measure_matmul_peak(sizes=(128, 192), threads=1, repeats=2, warmup=0)
    assert p["gflops_best"] >= p["gflops_median"] > 0
    assert len(p["runs"]) == 4 and p["gflops_best"] == max(r["gflops_best"] for r in p["runs"])
    assert peak_share(10**9, 0.5, 4.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        peak_share(1, 0.0, 1.0)
    rows = with_fp32_ratios([{"target": "onnx", "precision": "fp32", "model_bytes": 90, "total_bytes": 100},
                             {"target": "onnx", "precision": "mixed", "model_bytes": 20, "total_bytes": 25},
                             {"target": "tflite", "precision": "int8", "model_bytes": 9, "total_bytes": 9}])
    assert [r["ratio_to_fp32"] for r in rows] == [1.0, 0.25, None]


def test_bad_config_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown suite"):
        BenchConfig(suites=("speed",)).validate()
    with pytest.raises(ValueError, match="multiple of 16"):
        BenchConfig(image_size=100).validate()
    from click.testing import CliRunner

    from cli import main

    out = CliRunner().invoke(main, ["bench", "--suites", "nope"])
    assert out.exit_code == 1 and "unknown suite" in out.output


def test_targets_report_misses_and_untrained_weights():
    from bench.report import evaluate_targets

    res = {"latency": {"rows": [
        {"backend": "torch", "precision": "fp32", "part": "encoder", "correctness_only": False,
         "speedup_vs_torch_fp32": 1.0},
        {"backend": "litert", "precision": "fp32", "part": "encoder", "correctness_only": False,
         "speedup_vs_torch_fp32": 3.2, "peak_share": 0.5, "median_s": 0.4},
        {"backend": "litert", "precision": "mixed", "part": "encoder", "correctness_only": False,
         "speedup_vs_torch_fp32": 3.0, "median_s": 0.42},
        {"backend": "litert", "precision": "int8", "part": "encoder", "correctness_only": False,
         "speedup_vs_torch_fp32": 3.1, "median_s": 0.2},
        {"backend": "coreml-emulator", "precision": "fp32", "part": "encoder", "correctness_only": True,
         "speedup_vs_torch_fp32": 9.0}]},
        "sizes": {"rows": [{"target": "onnx", "precision": "mixed", "ratio_to_fp32": 0.33},
                           {"target": "tflite", "precision": "mixed", "ratio_to_fp32": 0.301}]},
        "accuracy": {"rows": [{"backend": "litert", "precision": "mixed", "drop_1pt": 0.0, "drop_3pt": 0.002,
                               "drop_box": 0.001, "agreement_1pt": 0.985, "agreement_box": 0.99}]},
        "conversion": {"rows": [{"target": "tflite", "precision": "fp32", "wall_s": 301.0, "max_rss_bytes": 1e9}]}}
    got = {t["target"]: t for t in evaluate_targets(res, "tinysam", 1024, trained=False)}
    best = got["best encoder package vs torch eager fp32"]
    assert best["status"] == "MISS" and best["value"] == 3.2 and "litert" in best["note"]  # emulator excluded
    assert got["LiteRT fp32 encoder share of fp32 peak"]["status"] == "PASS"
    mixed = got["LiteRT mixed encoder vs LiteRT fp32"]
    assert mixed["status"] == "MISS" and mixed["value"] == 0.95  # same-run ratio
    assert got["LiteRT int8 encoder vs LiteRT fp32"]["status"] == "N/A"  # shown, not a goal
    assert got["tflite mixed size vs fp32 (whole package)"]["status"] == "MISS"  # the size limit is LiteRT's
    assert got["onnx mixed size vs fp32 (whole package)"]["status"] == "N/A"
    gt = got["litert mixed mIoU drop vs torch fp32 (ground truth)"]
    assert gt["status"] == "PASS" and "UNTRAINED" in gt["note"]
    assert got["litert mixed 1 - mask IoU vs torch fp32 masks"]["status"] == "MISS"
    assert got["convert tflite/fp32"]["status"] == "MISS"
    assert all(t["applies"] for t in got.values())


def test_goal_fastest_accurate_package_against_torch_eager():
    from bench.ptq_goal import fastest_accurate

    def row(target: str, mixed: float, agree: bool, eager: float | None = None) -> dict:
        ms = {"fp32": 300.0, "mixed": mixed} | ({"torch_fp32": eager} if eager else {})
        return {"target": target, "encoder_ms": ms, "checks": {"agreement": {"met": agree}}}

    rows = [row("tflite", 150.0, True, eager=1000.0), row("executorch", 120.0, False), row("onnx", 190.0, True)]
    got = fastest_accurate(rows)
    assert got["target"] == "tflite" and got["speedup"] == 6.67 and got["met"]  # the faster one disagrees
    assert not fastest_accurate([row("tflite", 250.0, True, eager=1000.0)])["met"]  # 4x
    assert fastest_accurate([row("onnx", 190.0, True)]) is None  # torch eager not timed

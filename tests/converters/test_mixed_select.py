"""Mixed plans with per-group modes: budgets, the measured search, the frontier and the choice, on a
small seeded TinySAM measured for real (recipe scales, held-out mini-SA, the LiteRT cost table)."""

from __future__ import annotations

import pytest

from converters.backends import get_backend
from converters.mixed_select import Budget, PlanPoint, choose, frontier


def test_budget_exactly_one():
    assert Budget.of().kind == "iou_drop" and Budget.of().limit == 0.01
    assert Budget.of(max_latency_ratio=0.5).kind == "latency_ratio"
    assert Budget.of(max_size_mb=3).describe() == "weights <= 3 MB"
    with pytest.raises(ValueError, match="give one mixed-plan budget, not 2: --max-iou-drop, --max-size"):
        Budget.of(max_iou_drop=0.01, max_size_mb=3)
    with pytest.raises(ValueError, match="--max-latency-ratio must be in"):
        Budget.of(max_latency_ratio=-1)


def test_backend_modes_follow_capabilities():
    lite = get_backend("tflite").capabilities.mixed
    assert lite.modes("linear", "image_encoder.layers.1.blocks.0.mlp.fc1", False)[-1] == "static_int8"
    assert lite.modes("linear", "image_encoder.layers.1.blocks.0.mlp.fc2", True)[-1] == "dynamic_int8"
    assert lite.modes("conv2d", "image_encoder.neck.0", False) == ("float", "int8_weights", "static_int8")
    assert lite.modes("linear", "mask_decoder.transformer.layers.0.mlp.lin1", False) == ("float", "int8_weights")
    assert lite.modes("matmul", "image_encoder.layers.1.blocks.0.attn.matmul_qk", False) == ("float",)
    assert get_backend("onnx").capabilities.mixed.modes("linear", "image_encoder.x", False) == ("float", "int8_weights")
    assert get_backend("coreml").capabilities.mixed.speed.startswith("not measurable here")
    et = get_backend("executorch").capabilities.mixed  # static only where calibration data reaches (the encoder)
    assert et.modes("conv2d", "image_encoder.neck.0", False) == ("float", "static_int8")
    assert et.modes("linear", "image_encoder.layers.1.blocks.0.mlp.fc2", True) == ("float", "dynamic_int8")
    assert et.modes("linear", "mask_decoder.transformer.layers.0.mlp.lin1", False) == ("float", "dynamic_int8")
    with pytest.raises(ValueError, match="unknown layer kind"):
        lite.modes("lstm", "x", False)


@pytest.fixture(scope="module")
def measured(tiny_model):
    from converters.mixed_plan import PlanMeasurer
    from converters.w8a8 import recipe_qmodel
    from tests.torch_threads import torch_threads

    model, _ = tiny_model
    with torch_threads(1):
        m = PlanMeasurer(model, images=1, qmodel=recipe_qmodel(model, None, images=1),  # 1 search image: fast
                         confirm_images=1)
        yield m, m.plan("tflite", Budget.of(max_iou_drop=0.01))


def _points(plan: dict) -> list[PlanPoint]:
    return [PlanPoint(p["mode_counts"], p["iou_drop"], p["latency_ratio"], p["size_mb"], p["latency_ms"], p["step"],
                      p["move"]) for p in plan["plans"]]


def test_measured_plan_within_budget_and_fastest(measured):
    m, mp = measured
    plan = mp.plan
    assert plan["name"] == "mixed-measured-v2" and plan["speed"]["measured"]
    chosen = plan["measured"]
    assert chosen["iou_drop"] <= 0.01 and "confirm_iou_drop" in chosen
    fits = [p for p in plan["plans"] if p["iou_drop"] <= 0.01]
    if chosen["budget_met"]:  # the fastest plan within the budget on both scene sets
        assert chosen["confirm_iou_drop"] <= 0.01
        faster = [p for p in fits if p["latency_ratio"] < chosen["latency_ratio"]]
        assert all(p.get("confirm_iou_drop", 1.0) > 0.01 for p in faster)  # none held on the confirmation scenes
        undominated = [p for p in faster if not any(q["latency_ratio"] <= p["latency_ratio"] and q["iou_drop"] < p["iou_drop"]
                                                    for q in fits)]
        assert all("confirm_iou_drop" in p for p in undominated)  # the frontier's faster plans were measured again
    else:
        assert all(p.get("confirm_iou_drop", 1.0) > 0.01 for p in fits)
    # the fastest plan (step 0) is every layer at its fastest mode: the anchors' fastest package
    first = plan["plans"][0]
    anchors = plan["speed"]["anchors"]
    assert first["latency_ms"] == pytest.approx(anchors["fastest_ms"], abs=0.2)
    assert set(plan["layer_modes"].values()) <= {"float", "int8_weights", "dynamic_int8", "static_int8"}
    # every group has a measured cost per mode, decoder groups never int8 activations on LiteRT
    for g, costs in plan["group_costs"].items():
        if g.startswith("mask_decoder"):
            assert set(costs) <= {"float", "int8_weights"}
    assert mp.plot_png[:4] == b"\x89PNG"
    assert m.evals >= len(plan["plans"])


def test_confirmation_rejects_plans_whose_drop_does_not_hold_on_other_scenes():
    pts = [PlanPoint({"g": m}, drop, ratio, 1.0) for m, drop, ratio in
           (("a", 0.009, 0.4), ("b", 0.006, 0.5), ("c", 0.002, 0.7), ("d", 0.03, 0.3))]
    again = {"a": 0.015, "b": 0.008, "c": 0.001}
    seen = []

    def confirm(p: PlanPoint) -> float:
        seen.append(p.choice["g"])
        return again[p.choice["g"]]

    c = choose(pts, Budget.of(max_iou_drop=0.01), confirm=confirm)
    assert c.chosen.choice == {"g": "b"} and c.chosen.confirm_drop == 0.008  # "a" fit its scenes only
    assert seen == ["a", "b", "c"]  # within the budget, fastest first ("d" is over it)
    assert [p.choice["g"] for p in c.rejected][:2] == ["a", "d"] and c.rejected[0].confirm_drop == 0.015
    assert c.chosen.to_dict()["confirm_iou_drop"] == 0.008
    assert choose(pts, Budget.of(max_iou_drop=0.01)).chosen.choice == {"g": "a"}  # without confirmation
    worst = choose(pts, Budget.of(max_iou_drop=0.01), confirm=lambda p: 0.05)
    assert worst.chosen.confirm_drop == 0.05 and worst.chosen.choice == {"g": "a"}  # none holds: closest


def test_other_budgets_on_the_same_measured_plans(measured):
    _, mp = measured
    pts = _points(mp.plan)
    ratio = sorted(p.latency_ratio for p in pts)[len(pts) // 2]
    c = choose(pts, Budget.of(max_latency_ratio=ratio))
    assert c.chosen.latency_ratio <= ratio
    assert c.chosen.iou_drop == min(p.iou_drop for p in pts if p.latency_ratio <= ratio)
    size = max(p.size_mb for p in pts)
    assert choose(pts, Budget.of(max_size_mb=size)).chosen.iou_drop == min(p.iou_drop for p in pts)
    with pytest.raises(ValueError, match="no measured mixed plan within encoder latency <= 0.01 x fp32"):
        choose(pts, Budget.of(max_latency_ratio=0.01))
    fr = frontier(pts)
    assert fr and all(not any(q.latency_ratio < p.latency_ratio and q.iou_drop < p.iou_drop for q in pts) for p in fr)


@pytest.mark.slow  # LiteRT conversions of the snapped encoder and decoder (60+ s on 2 cores)
def test_tflite_mixed_package_runs_the_plan(tiny_model, measured, tmp_path):
    import json

    from ai_edge_litert.interpreter import Interpreter

    from converters.api import build_package
    from converters.mixed_plan import FRONTIER_FILE
    from converters.options import ConvertOptions
    from converters.package import check_hashes
    from converters.w8a8 import SCALES_FILE

    model, info = tiny_model
    m, mp = measured
    res = build_package(model, info, "tflite", ConvertOptions(precision="mixed", out_dir=tmp_path), plan=mp.plan,
                        extra_files={FRONTIER_FILE: mp.plot_png}, qmodel=m.q)
    assert res.parity["passed"], res.parity["failures"]
    assert "fake_quant" in res.parity  # gated against the recipe's model of exactly the package's int8 layers
    manifest = json.loads((res.path / "manifest.json").read_text())
    pp = manifest["precision_plan"]
    assert pp["name"] == "mixed-measured-v2" and pp["layer_counts"]["int8_weights_int8_activations"] > 0
    assert {FRONTIER_FILE, SCALES_FILE} <= set(manifest["files"]) and check_hashes(res.path) == []
    ops = {op["op_name"] for op in Interpreter(str(res.path / "encoder.tflite"))._get_ops_details()}  # noqa: SLF001
    assert "QUANTIZE" in ops  # static int8 inputs in the encoder
    from tinysam.quant.qmodel import quant_layers

    weighted = {n for n, layer in quant_layers(m.q).items() if hasattr(layer, "weight")}
    for part, prefix in (("encoder", "image_encoder."), ("decoder", "mask_decoder.")):
        kept = [n for n, mode in mp.plan["layer_modes"].items() if mode == "float" and n in weighted and n.startswith(prefix)]
        half = [d for d in Interpreter(str(res.path / f"{part}.tflite")).get_tensor_details() if d["dtype"].__name__ == "float16"]
        assert bool(half) == bool(kept), (part, kept)  # the plan's float layers: float16 weights, float compute


@pytest.mark.slow  # an ExecuTorch plan measured, exported and lowered (about 2 min on 2 cores)
def test_executorch_mixed_package_runs_the_plan(tiny_model, measured, tmp_path):
    import json

    from converters.api import build_package
    from converters.options import ConvertOptions

    model, info = tiny_model
    m, _ = measured
    plan = m.plan("executorch", Budget.of(max_iou_drop=0.05)).plan
    modes = plan["layer_modes"]
    res = build_package(model, info, "executorch", ConvertOptions(precision="mixed", out_dir=tmp_path), plan=plan,
                        qmodel=m.q)
    assert res.parity["passed"], res.parity["failures"]
    assert "fake_quant" in res.parity
    models = json.loads((res.path / "manifest.json").read_text())["models"]
    for part, prefix in (("encoder", "image_encoder."), ("decoder", "mask_decoder.")):
        int8 = {n for n, mode in modes.items() if mode != "float" and n.startswith(prefix)}
        # the quantizer reports what it quantized: every int8 layer of the plan the program runs
        assert models[part]["int8_layers"]["int8"] == len(int8 - {"image_encoder.head"}), part
    assert "int8_weights" not in modes.values()  # no weight-only int8 form in the XNNPACK quantizer
    from converters.verify import verify_package
    from converters.w8a8 import SCALES_FILE

    scaled = set(json.loads((res.path / SCALES_FILE).read_text())["layers"])
    assert scaled == {n for n, mode in modes.items() if mode != "float"}  # only the plan's int8 layers
    assert verify_package(res.path)["ok"]  # the reference rebuilt from those scales passes the gate again


def test_convert_prints_plan_speed_accuracy_and_rejected(measured):
    from converters.mixed_plan import plan_summary

    _, mp = measured
    lines = plan_summary(mp.plan, "tflite")
    assert lines[0].startswith("tflite mixed plan (iou drop <= 0.01): encoder ") and "predicted at 1024 px" in lines[0]
    assert "held-out mini-SA" in lines[1] and "128 px" in lines[1] and "speed: cost table" in lines[1]
    unmet = not mp.plan["measured"]["budget_met"]
    assert len(lines) == 2 + unmet + len(mp.plan["rejected"])
    assert ("came closest" in lines[2]) == unmet
    assert all(line.startswith("  rejected: ") for line in lines[2 + unmet:])
    assert plan_summary({"name": "mixed-default-v1"}, "onnx") == []


def test_moves_pay_for_bytes_as_well_as_time():
    """A group that costs no encoder time (the decoder's) is not free: its bytes are priced as a share
    of the all-float plan's, so an equal accuracy gain for less cost wins."""
    from converters.mixed_select import Search

    modes = {"enc": ("float", "static_int8"), "dec": ("float", "int8_weights")}
    isolated = {("enc", "static_int8"): 0.02, ("dec", "int8_weights"): 0.02}

    def cost(choice: dict) -> tuple[float, float, None]:
        ratio = 0.5 + (0.01 if choice["enc"] == "float" else 0.0)  # enc -> float: +1% latency
        size = 7.0 + (3.0 if choice["dec"] == "float" else 0.0)    # dec -> float: +3 MB of 10 MB all-float
        return ratio, size, None

    s = Search(modes, isolated, lambda c: 0.0, cost)
    assert s.float_size_mb == 10.0
    assert s.next_move({"enc": "static_int8", "dec": "int8_weights"}, Budget.of()) == ("enc", "float")


def test_selected_iou_counts_a_flipped_pick():
    import torch

    from tinysam.quant.sensitivity import selected_iou

    low = torch.full((2, 3, 4, 4), -1.0)
    low[:, 0, :2] = 1.0   # mask 0: top half
    low[:, 1, :, :1] = 1.0  # mask 1: first column
    ref_iou = torch.tensor([[0.9, 0.8, 0.1], [0.9, 0.8, 0.1]])
    iou = torch.tensor([[0.9, 0.8, 0.1], [0.79, 0.8, 0.1]])  # prompt 2's pick flips to mask 1
    got = selected_iou(low, ref_iou, low, iou)
    assert got[0] == 1.0 and got[1] == pytest.approx(2 / 10)  # top half vs first column: 2 shared of 10 pixels


def test_backward_pass_undoes_moves_that_were_not_needed():
    """Groups interact: slowing `a` first (cheaper per gain alone) does not fix the plan, slowing `b` does;
    the backward pass then measures `a` back at static int8 and keeps it."""
    from converters.mixed_select import Search, search_plans

    modes = {"a": ("float", "static_int8"), "b": ("float", "static_int8")}
    isolated = {("a", "static_int8"): 0.02, ("b", "static_int8"): 0.02}

    def cost(choice: dict) -> tuple[float, float, None]:
        return 0.5 + 0.1 * (choice["a"] == "float") + 0.2 * (choice["b"] == "float"), 1.0, None

    search = Search(modes, isolated, lambda c: 0.02 if c["b"] == "static_int8" else 0.0, cost)
    points = search_plans(search, Budget.of(max_iou_drop=0.01))
    moves = [p.move for p in points]
    assert moves[1:3] == ["a -> float", "b -> float"] and "a -> static_int8 (back)" in moves
    assert dict(choose(points, Budget.of(max_iou_drop=0.01)).chosen.choice) == {"a": "static_int8", "b": "float"}


def test_backward_pass_gives_back_bytes_a_decoder_group_did_not_need():
    """A decoder group (no encoder time, 3 MB of float weights) slowed to float first does not fix the plan;
    the backward pass measures it back at int8 weights, and at equal speed and drop the smaller plan wins."""
    from converters.mixed_select import Search, search_plans

    modes = {"enc": ("float", "static_int8"), "dec": ("float", "int8_weights")}
    isolated = {("enc", "static_int8"): 0.02, ("dec", "int8_weights"): 0.015}

    def cost(choice: dict) -> tuple[float, float, None]:
        return 0.5 + 0.5 * (choice["enc"] == "float"), 7.0 + 3.0 * (choice["dec"] == "float"), None

    search = Search(modes, isolated, lambda c: 0.02 if c["enc"] == "static_int8" else 0.0, cost)
    points = search_plans(search, Budget.of(max_iou_drop=0.01))
    assert [p.move for p in points][1:3] == ["dec -> float", "enc -> float"]
    assert "dec -> int8_weights (back)" in [p.move for p in points]
    chosen = choose(points, Budget.of(max_iou_drop=0.01)).chosen
    assert dict(chosen.choice) == {"enc": "float", "dec": "int8_weights"} and chosen.size_mb == 7.0


def test_search_runs_again_for_a_tighter_drop_when_no_plan_holds_on_the_confirmation_scenes():
    """Two groups; the confirmation scenes see 1.5x the search's drop. The plan that fits the search's scenes
    does not hold there, so the search goes on to a slower plan that does."""
    from converters.mixed_select import Search, search_and_choose

    drop = {"static_int8": 0.007, "dynamic_int8": 0.002, "float": 0.0}
    cost = {"static_int8": 0.2, "dynamic_int8": 0.35, "float": 0.5}
    modes = {"a": ("float", "dynamic_int8", "static_int8"), "b": ("float", "dynamic_int8", "static_int8")}
    isolated = {(g, m): drop[m] for g in modes for m in drop}
    search = Search(modes, isolated, lambda c: sum(drop[m] for m in c.values()),
                    lambda c: (sum(cost[m] for m in c.values()), 1.0, None))
    picked = search_and_choose(search, Budget.of(max_iou_drop=0.01), lambda p: 1.5 * p.iou_drop)
    assert picked.chosen.iou_drop <= 0.01 and picked.chosen.confirm_drop <= 0.01
    assert sorted(picked.chosen.choice.values()) == ["dynamic_int8", "dynamic_int8"]  # static+dynamic fit 0.009 only
    assert len({tuple(sorted(p.choice.items())) for p in picked.points}) == len(picked.points)  # no repeats


def test_a_stalled_search_measures_which_group_to_give_float():
    """Drops alone (from one scene) say no group costs anything, yet the plan is over budget: the search tries each
    group at float on the whole plan and takes the one that measures lowest (here the last of three), not the first."""
    from converters.mixed_select import Search, search_plans

    modes = {g: ("float", "static_int8") for g in ("a", "b", "c")}
    isolated = {(g, "static_int8"): 0.0 for g in modes}

    def cost(choice: dict) -> tuple[float, float, None]:
        return 0.4 + 0.2 * sum(m == "float" for m in choice.values()), 1.0, None

    search = Search(modes, isolated, lambda c: 0.0 if c["c"] == "float" else 0.02, cost)
    points = search_plans(search, Budget.of(max_iou_drop=0.01))
    assert points[1].move == "c -> float" and points[1].iou_drop == 0.0
    assert dict(choose(points, Budget.of(max_iou_drop=0.01)).chosen.choice) == {"a": "static_int8", "b": "static_int8",
                                                                                  "c": "float"}

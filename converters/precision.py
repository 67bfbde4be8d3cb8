"""The precision plan as data, and its translation into each backend's terms.

A plan is a default weight dtype plus ordered "keep float" rules. A rule selects layers either
by module path (a regex searched in the layer name, written with `.` between path parts; the
backends' own separators `/` and `_` are accepted too) or by kind (`normalization`, `softmax`).
Each backend translates the rules into its own node/tensor/op names (`converters/backends/<target>/recipes.py`).

`w8a8` is the Q-TinySAM recipe (`tinysam.quant`): int8 weights and static int8 activations with the
recipe's searched scales; its plan (which layers are int8, what stays float and why) is built by
`converters.w8a8.w8a8_plan` from the calibrated model.

Mixed plans come in three kinds: the fixed plan below (`mixed-default-v1`), a plan measured on
calibration data (`converters.mixed_plan.measure_mixed_plan`, rules from per-group mask-IoU sensitivity),
and the per-target measured plan `mixed-measured-v2` (`converters.mixed_plan.PlanMeasurer`): each layer
group at float, int8 weights, dynamic or static int8 activations (`layer_modes`), chosen from measured
accuracy and the target's speed table within one budget (`converters.mixed_select`). A rule with
`"scope": "activations"` concerns only how a layer's input activation is quantized (twin-uniform
ranges have no int8 form); the weight-only int8 exporters ignore it and quantize that layer's weights.
`applied_precision` records, per backend (its `applied` tables), what the exported files actually hold.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from converters.spec import PRECISIONS, check_choice

MIXED_PLANS: tuple[str, ...] = ("auto", "measured", "fixed")
# "auto": measured up to this input size, fixed above. Measured on 2 shared cores (1 thread, busy
# machine), seeded TinySAM: 78-85 s at 256, 930 s at 1024 (encoder cost grows with the pixels).
AUTO_MEASURED_MAX_SIZE = 512


def resolve_mixed_plan(mixed_plan: str, image_size: int, budget_given: bool = False) -> str:
    """"auto" -> "measured" at input sizes up to AUTO_MEASURED_MAX_SIZE or when a budget is given, else "fixed"."""
    check_choice("mixed plan", mixed_plan, MIXED_PLANS)
    if mixed_plan != "auto":
        return mixed_plan
    return "measured" if budget_given or image_size <= AUTO_MEASURED_MAX_SIZE else "fixed"

# Fixed, sensible mixed plan until measured PTQ plans exist: the stem, normalizations, softmax and
# the decoder's output upscaling stay float; all other weights are int8.
MIXED_KEEP_FLOAT: tuple[dict, ...] = (
    {"module": r"image_encoder\.patch_embed", "reason": "stem: first convs see raw pixels"},
    {"kind": "normalization", "reason": "LayerNorm/BatchNorm statistics are range-sensitive"},
    {"kind": "softmax", "reason": "attention probabilities"},
    {"module": r"mask_decoder\.output_upscaling", "reason": "decoder output upscaling feeds the mask logits"},
)

# `int8` keeps one decoder group float, weights included: the group `converters.w8a8.FLOAT_LAYERS` keeps float in
# W8A8 packages for the same reason.
INT8_KEEP_FLOAT: tuple[dict, ...] = (
    {"module": r"mask_decoder\.transformer\.layers\.1\.cross_attn_image_to_token",
     "reason": "the last two-way layer's image-to-token attention rewrites the image embedding the masks are read "
               "from; with it int8, the shipped 256 px student at 1024 px failed the parity gate on every CPU target "
               "(mask IoU ONNX 0.943, LiteRT 0.941, ExecuTorch 0.940; float: 0.994, 0.973, 0.977)"},
)

# Rule kinds a plan may name; each backend maps them to its own op types (`Backend.kind_ops`).
RULE_KINDS: tuple[str, ...] = ("normalization", "softmax")


# Precisions only Core AI exports (coreai-opt): what they store, for the plan written into the manifest.
CORE_AI_PLANS: dict[str, dict] = {
    "palette4": {"name": "palette4", "weights": "4-bit palettized (k-means lookup table per 16 output channels)",
                 "activations": "float32", "keep_float": []},
    "palette6": {"name": "palette6", "weights": "6-bit palettized (k-means lookup table per 16 output channels)",
                 "activations": "float32", "keep_float": []},
    "w8a8-opt": {"name": "w8a8-opt", "weights": "int8", "granularity": "per_channel",
                 "activations": "int8 static per tensor (coreai-opt calibration) in the encoder, float32 in the decoder",
                 "keep_float": []},
}


def precision_plan(precision: str) -> dict:
    """The plan for `precision` as plain data (also written into the manifest)."""
    check_choice("precision", precision, PRECISIONS)
    if precision in ("fp32", "fp16"):
        dtype = "float32" if precision == "fp32" else "float16"
        return {"name": precision, "weights": dtype, "activations": dtype, "keep_float": []}
    if precision in CORE_AI_PLANS:
        return copy.deepcopy(CORE_AI_PLANS[precision])
    if precision == "w8a8":
        return {"name": "w8a8-qtinysam", "weights": "int8", "granularity": "per_channel",
                "activations": "int8", "activation_granularity": "per_tensor, static (the recipe's scales)",
                "keep_float": []}
    plan = {"name": precision, "weights": "int8", "granularity": "per_channel",
            "activations": "dynamic int8 at run time (ONNX Runtime, LiteRT), float32 (CoreML)",
            "keep_float": []}
    if precision == "int8":
        plan["keep_float"] = [dict(r) for r in INT8_KEEP_FLOAT]
    if precision == "mixed":
        plan["activations"] = "float32"
        plan["name"] = "mixed-default-v1"
        plan["keep_float"] = [dict(r) for r in MIXED_KEEP_FLOAT]
    return plan


@dataclass(frozen=True)
class KeepFloatRule:
    """One "keep float" rule: layers selected by module path (`module`, a regex written with `.`) or by
    kind (`kind`, one of RULE_KINDS). `scope="activations"`: the rule concerns only how the layer's input
    is quantized (the weight-only exporters ignore it); `precision="fp16"`: kept weights stored as fp16
    where the target can. W8A8 plans also carry descriptive rules (counts, operands) in the manifest."""

    reason: str = ""
    module: str | None = None
    kind: str | None = None
    scope: str = "all"
    precision: str | None = None

    @property
    def on_weights(self) -> bool:
        """The rule keeps weights float (it is not an activation-only rule)."""
        return self.scope != "activations"

    @classmethod
    def from_dict(cls, rule: Mapping) -> KeepFloatRule:
        """Read one manifest rule; an unknown kind or scope is refused with the known ones."""
        kind, scope = rule.get("kind"), rule.get("scope", "all")
        if kind is not None:
            check_choice("plan rule kind", kind, RULE_KINDS)
        check_choice("plan rule scope", scope, ("all", "activations"))
        return cls(str(rule.get("reason", "")), rule.get("module"), kind, scope, rule.get("precision"))


@dataclass(frozen=True)
class PrecisionPlan:
    """A precision plan: its kind (the package precision) and its keep-float rules, typed; `to_dict()`
    is the manifest's `precision_plan` (which also carries the measured or recipe details)."""

    kind: str
    rules: tuple[KeepFloatRule, ...]
    data: Mapping = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping, kind: str) -> PrecisionPlan:
        """The typed plan of manifest-form `data` for precision `kind`."""
        check_choice("precision", kind, PRECISIONS)
        return cls(kind, _rules(data), copy.deepcopy(dict(data)))

    @classmethod
    def for_precision(cls, precision: str) -> PrecisionPlan:
        """The built-in plan of `precision` (`precision_plan`)."""
        return cls.from_dict(precision_plan(precision), precision)

    def to_dict(self) -> dict:
        """The manifest form."""
        return copy.deepcopy(dict(self.data))

    def with_data(self, **items) -> PrecisionPlan:  # noqa: ANN003
        """A copy whose manifest form has `items` set (e.g. `applied`)."""
        return PrecisionPlan(self.kind, self.rules, {**self.to_dict(), **items})

    @property
    def layer_modes(self) -> dict[str, str]:
        """Layer -> compute mode (`converters.backends.base.GROUP_MODES`) of a measured mixed plan with
        per-group modes (`converters.mixed_plan.PlanMeasurer`); {} for every other plan."""
        return dict(self.data.get("layer_modes", {}))

    @property
    def weight_rules(self) -> list[KeepFloatRule]:
        """Rules that keep weights float."""
        return [r for r in self.rules if r.on_weights]

    @property
    def activation_only_rules(self) -> list[KeepFloatRule]:
        """Rules that concern only how an input activation is quantized."""
        return [r for r in self.rules if not r.on_weights]


def _rules(plan: PrecisionPlan | Mapping) -> tuple[KeepFloatRule, ...]:
    if isinstance(plan, PrecisionPlan):
        return plan.rules
    return tuple(KeepFloatRule.from_dict(r) for r in plan.get("keep_float", []))


def module_regex(pattern: str) -> re.Pattern:
    """Compile a module-path rule so it also matches names written with `/` or `_` separators."""
    return re.compile(pattern.replace(r"\.", r"[./_]"))


def weight_rules(plan: PrecisionPlan | Mapping) -> list[KeepFloatRule]:
    """Keep-float rules that apply to weights (all rules except activation-only ones)."""
    return [r for r in _rules(plan) if r.on_weights]


def _module_rules(plan: PrecisionPlan | Mapping) -> list[re.Pattern]:
    return [module_regex(r.module) for r in weight_rules(plan) if r.module is not None]


def _kinds(plan: PrecisionPlan | Mapping) -> list[str]:
    return [r.kind for r in weight_rules(plan) if r.kind is not None]


def keep_float_name(plan: PrecisionPlan | Mapping, name: str) -> bool:
    """True if the layer called `name` (any backend's spelling) must stay float under `plan`."""
    return any(rx.search(name) for rx in _module_rules(plan))


def keep_float_ops(plan: PrecisionPlan | Mapping, kind_ops: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Op types that `plan` keeps float, in the vocabulary of `kind_ops` (a backend's rule kind -> op types)."""
    ops: list[str] = []
    for kind in _kinds(plan):
        if kind not in kind_ops:
            raise ValueError(f"plan rule kind {kind!r} has no op types in this backend; it maps: "
                             f"{', '.join(kind_ops)}")
        ops.extend(kind_ops[kind])
    return ops


WRAPPED_PARTS = ("mask_decoder", "prompt_encoder")


def without_top_module(pattern: str) -> str | None:
    """A decoder-side module rule without its top module (`mask_decoder\\.x` -> `x`), else None.

    The exported decoder graphs call into these parts' children (`transformer`, `output_upscaling`,
    ...) from a wrapper, so their layer names carry no `mask_decoder` / `prompt_encoder` scope.
    """
    parts = pattern.split(r"\.", 1)
    return parts[1] if len(parts) == 2 and parts[0] in WRAPPED_PARTS else None


def rules_for_names(plan: PrecisionPlan | Mapping, names: list[str]) -> list[re.Pattern]:
    """The plan's module rules as regexes for one graph: a rule that matches none of `names` is
    tried again without its top module (`without_top_module`)."""
    out = []
    for r in weight_rules(plan):
        if r.module is None:
            continue
        rx = module_regex(r.module)
        inner = without_top_module(r.module)
        if inner is not None and not any(rx.search(n) for n in names):
            rx = module_regex(inner)
        out.append(rx)
    return out


def applied_precision(plan: PrecisionPlan, target: str) -> dict:
    """What the `target` files hold under `plan` (for the manifest), per weights/activations, from the
    target backend's `applied` tables, chosen by the plan's kind."""
    from converters.backends import get_backend

    tables = get_backend(target).applied
    data = plan.data
    if plan.kind == "w8a8":
        return dict(tables.w8a8)
    if plan.kind in ("fp32", "fp16") or plan.kind in CORE_AI_PLANS:
        return {"weights": data.get("weights"), "activations": data.get("activations")}
    out = dict(tables.mixed if plan.kind == "mixed" else tables.int8)
    out["searched_scales"] = tables.searched_scales
    if plan.layer_modes and get_backend(target).export_mixed is not None:
        counts: dict[str, int] = {}
        for mode in plan.layer_modes.values():
            counts[mode] = counts.get(mode, 0) + 1
        out["activations"] = ("per layer as the measured plan says (" + ", ".join(f"{m}: {n}" for m, n in sorted(counts.items()))
                              + "); static int8 inputs take the recipe's searched scales")
        out["searched_scales"] = "used: static int8 inputs and int8 weights on the recipe's grid (w8a8_scales.json)"
    if plan.activation_only_rules:
        out["activation_only_rules"] = (f"{len(plan.activation_only_rules)} twin-uniform rules concern activations "
                                        "only; the weights of those layers are int8 here")
    return out

"""ONNX export of SpikeTrack's inference split: a template encoder and a tracking step graph.

Two files in the output folder (static shapes, batch 1):

* `template_encoder.onnx`: `templates` (T, 1, 3, S, S) float32 -> `memory0 … memory5`
  (T, 1, h, d, dv); run once per template update;
* `track_step.onnx`: `search` (1, 1, 3, S, S) + `memory0 … memory5` -> `score_map` (1, 1, F, F),
  `size_map` (1, 2, F, F), `offset_map` (1, 2, F, F); run per frame;

plus `export.json` (variant, weights, opset, tensors). Float export: the BN-folded model
(`spiketrack.models.fuse`, what the tracker runs) traced by torch's ONNX exporter; neurons become
`Clip`/`Round` (half to even, as torch.round)/`Div`. Fixed point: the integer IR of
`converters.quantize` lowered by `converters.onnx_fixed` (memories are int64 there), bit exact
with `converters.fixed_point`. Graphs are written at opset 18 (torch's exporter) and converted
with onnx's version converter to any other opset in `MIN_OPSET..MAX_OPSET`.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from onnx import version_converter
from onnxscript.optimizer import fold_constants
from torch import nn

from converters.ir import IRBundle
from converters.onnx_fixed import NATIVE_OPSET, UnsupportedOp, fixed_point_model
from spiketrack.errors import UserError
from spiketrack.models.fuse import fuse_for_inference
from spiketrack.models.procedural import procedural_value
from spiketrack.utils.atomic import atomic_dir

MIN_OPSET = 17
MAX_OPSET = 26  # the highest opset onnxruntime 1.32 loads
TEMPLATE_FILE = "template_encoder.onnx"
STEP_FILE = "track_step.onnx"
MANIFEST_FILE = "export.json"
MEMORY_NAMES = tuple(f"memory{i}" for i in range(6))
MAP_NAMES = ("score_map", "size_map", "offset_map")
REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
PROCEDURAL_PROBES = ("decoder.conv5_ctr.weight", "decoder.conv5_ctr.bias", "encoder.downsample1_1.encode_conv.bias")


class TemplateEncoderGraph(nn.Module):
    """templates (T, 1, 3, S, S) -> the six memories, as a tuple (ONNX outputs memory0..5)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, templates: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode_templates(templates))


class TrackStepGraph(nn.Module):
    """search (1, 1, 3, S, S) + six memories -> (score_map, size_map, offset_map)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, search: torch.Tensor, *memories: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.model.track_step(search, list(memories))
        return tuple(maps[name] for name in MAP_NAMES)


@dataclass(frozen=True)
class OnnxExport:
    """Paths of the written graphs and what they hold."""

    folder: Path
    template_encoder: Path
    track_step: Path
    opset: int
    fixed_point: bool
    variant: str
    weights: str


def check_opset(opset: int) -> int:
    """The opset if supported, else a UserError naming the supported range."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(f"unsupported ONNX opset {opset!r} (supported: {MIN_OPSET}..{MAX_OPSET})")
    return opset


def check_out_dir(out: Path) -> Path:
    """An output folder path: an existing file there is a UserError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError("output path exists and is a file; give a folder", out)
    return out


def weights_description(model: nn.Module) -> str:
    """'PROCEDURAL weights (…)' when the model holds the spec §17 generator's weights (a model exported
    without a checkpoint), else a neutral label."""
    state = model.state_dict()
    bn_prefixes = {k.rpartition(".")[0] for k in state if k.endswith(".running_mean")}
    procedural = all(
        k in state and torch.equal(state[k].cpu(), torch.from_numpy(procedural_value(k, tuple(state[k].shape),
                                                                                     bn_prefixes)))
        for k in PROCEDURAL_PROBES)
    if procedural:
        return "PROCEDURAL weights (untrained, spec §17 generator; outputs are not meaningful boxes)"
    return "weights as loaded (not the procedural generator's)"


def folded(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with constant subgraphs folded (the version converter needs reduction axes as
    initializers; onnxscript's constant folding, without the rest of its optimizer)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    fold_constants(copy)
    return copy


def convert_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """`model` (opset 18) at `opset`. Below 18, reductions lose `noop_with_empty_axes`, which onnx's
    converter leaves on opset-13 nodes (the attribute does not exist there; 0 is its default)."""
    if opset == NATIVE_OPSET:
        return model
    converted = version_converter.convert_version(folded(model), opset)
    if opset < NATIVE_OPSET:
        for node in converted.graph.node:
            if node.op_type in REDUCE_OPS:
                keep = [a for a in node.attribute if not (a.name == "noop_with_empty_axes" and a.i == 0)]
                del node.attribute[:]
                node.attribute.extend(keep)
    onnx.checker.check_model(converted)
    return converted


def example_inputs(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Zero templates and search crop of the variant's shapes, and the memories they produce."""
    cfg = model.cfg
    s = cfg.search_size
    templates = torch.zeros(cfg.num_templates, 1, 3, s, s)
    with torch.no_grad():
        return templates, torch.zeros(1, 1, 3, s, s), list(model.encode_templates(templates))


def traced_proto(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
                 optimize: bool) -> onnx.ModelProto:
    """torch's ONNX exporter (dynamo, opset 18, weights inside the model; `optimize`: onnxscript's
    constant folding and dead-code removal, which take about as long as the export itself)."""
    with torch.no_grad():
        program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=NATIVE_OPSET, external_data=False,
                                    input_names=input_names, output_names=output_names, verbose=False,
                                    optimize=optimize)
    return program.model_proto


def float_protos(model: nn.Module, optimize: bool) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Template-encoder and tracking-step graphs of the BN-folded float model."""
    fused = fuse_for_inference(model).float()
    templates, search, memories = example_inputs(fused)
    enc = traced_proto(TemplateEncoderGraph(fused), (templates,), ["templates"], list(MEMORY_NAMES), optimize)
    step = traced_proto(TrackStepGraph(fused), (search, *memories), ["search", *MEMORY_NAMES], list(MAP_NAMES),
                        optimize)
    return enc, step


def fixed_protos(model: nn.Module, bundle: IRBundle | None) -> tuple[onnx.ModelProto, onnx.ModelProto, IRBundle]:
    """Integer graphs of the quantized model (quantized here with the default calibration unless given)."""
    if bundle is None:
        from converters.quantize import quantize_model

        bundle = quantize_model(model).bundle
    if bundle.variant != model.cfg.name:
        raise UserError(f"IR bundle is for variant {bundle.variant!r}, the model is {model.cfg.name!r}")
    try:
        return fixed_point_model(bundle.template), fixed_point_model(bundle.search), bundle
    except UnsupportedOp as exc:
        raise UserError(f"fixed-point ONNX export: {exc}") from None


def tensor_info(values: list[onnx.ValueInfoProto]) -> dict[str, dict]:
    """name -> {dtype, shape} of graph inputs or outputs."""
    def dims(v: onnx.ValueInfoProto) -> list[int]:
        return [d.dim_value for d in v.type.tensor_type.shape.dim]
    return {v.name: {"dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                     "shape": dims(v)} for v in values}


def stamp(proto: onnx.ModelProto, meta: dict[str, str]) -> onnx.ModelProto:
    """Attach `meta` as the model's metadata_props."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    return proto


def export_onnx(model: nn.Module, out_dir: str | Path, fixed_point: bool = False, opset: int = NATIVE_OPSET,
                bundle: IRBundle | None = None, optimize: bool = True) -> OnnxExport:
    """Write `template_encoder.onnx`, `track_step.onnx` and `export.json` into `out_dir` (atomically).

    `fixed_point`: export the integer IR (`bundle`, or `quantize_model(model)` when None);
    `optimize`: run onnxscript's graph optimizer on the float graphs (same outputs, fewer nodes)."""
    out = check_out_dir(Path(out_dir))
    check_opset(opset)
    weights = weights_description(model)
    if fixed_point:
        enc, step, bundle = fixed_protos(model, bundle)
    else:
        enc, step = float_protos(model, optimize)
    meta = {"variant": model.cfg.name, "weights": weights, "numerics": "fixed point" if fixed_point else "float32"}
    protos = {TEMPLATE_FILE: convert_opset(enc, opset), STEP_FILE: convert_opset(step, opset)}
    manifest = {"format": "spiketrack-onnx", "version": 1, **meta, "opset": opset,
                "graphs": {name: {"inputs": tensor_info(list(p.graph.input)),
                                  "outputs": tensor_info(list(p.graph.output))} for name, p in protos.items()}}
    if fixed_point:
        manifest["output_frac_bits"] = {name: bundle.search.node(nid).frac_bits
                                        for name, nid in bundle.search.outputs.items()}
    with atomic_dir(out) as tmp:
        for name, proto in protos.items():
            onnx.save(stamp(proto, meta), tmp / name)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return OnnxExport(out, out / TEMPLATE_FILE, out / STEP_FILE, opset, fixed_point, model.cfg.name, weights)


def spike_outputs(proto: onnx.ModelProto) -> dict[str, list[str]]:
    """Neuron module path -> its `Round` output tensors (spike counts per call and step, in execution
    order) of a float export, from the exporter's name scopes; for layer-by-layer comparisons."""
    found: dict[str, list[str]] = {}
    for node in proto.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if node.op_type != "Round" or "MultiSpikeNeuron" not in meta.get("pkg.torch.onnx.class_hierarchy", ""):
            continue
        scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
        found.setdefault(scopes[-2].removeprefix("model."), []).append(node.output[0])
    return found


def with_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `proto` that also outputs the tensors `names` (shape left to the runtime)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    return copy


def export_onnx_command(model: nn.Module, out: Path) -> str:
    """CLI glue: float export of `model` into folder `out`; a printable summary."""
    result = export_onnx(model, out)
    return (f"ONNX ({result.variant}, opset {result.opset}, float32): {result.template_encoder.name} + "
            f"{result.track_step.name} -> {result.folder}\nweights: {result.weights}")

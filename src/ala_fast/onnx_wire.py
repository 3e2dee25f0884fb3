"""Reading a tree ensemble out of ONNX bytes without the ``onnx`` package.

The compiled evaluator needs the attributes of one ``TreeEnsembleRegressor`` node and the
width of the graph's input, nothing else. ``import onnx`` costs over a second (most of it its
``ml_dtypes`` dependency), about as long as everything else :func:`ala_fast.load` does, so the
run time reads the protobuf wire format itself: the few messages on the path ModelProto.graph
-> GraphProto.node -> NodeProto.attribute, and GraphProto.input -> ValueInfoProto.type ->
TypeProto.tensor_type -> shape -> dim (field numbers from onnx/onnx.proto). Attribute values
come back as ``onnx.helper.get_attribute_value`` gives them, with repeated numbers as NumPy
arrays (float32, int64); tests/test_model.py checks the two readings agree.

Anything that is not well-formed protobuf raises :class:`BundleError`.
"""

from __future__ import annotations

import numpy as np

from .errors import BundleError

# field numbers (onnx.proto)
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INPUT = 1, 11
_NODE_OP_TYPE, _NODE_ATTRIBUTE = 4, 5
_ATTR_NAME, _ATTR_F, _ATTR_I, _ATTR_S = 1, 2, 3, 4
_ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS, _ATTR_TYPE = 7, 8, 9, 20
_VALUE_TYPE, _TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_VALUE = 2, 1, 2, 1, 1
# AttributeProto.AttributeType
_FLOAT, _INT, _STRING, _FLOATS, _INTS, _STRINGS = 1, 2, 3, 6, 7, 8

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class _Malformed(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _field(buf, pos: int, end: int):
    """The field at ``pos``: (field number, wire type, value, next position); the value is an
    int for varints, a slice of ``buf`` otherwise."""
    key, pos = _varint(buf, pos)
    field, wire = key >> 3, key & 7
    if wire == _VARINT:
        value, pos = _varint(buf, pos)
        return field, wire, value, pos
    if wire == _BYTES:
        size, pos = _varint(buf, pos)
    elif wire in (_FIXED32, _FIXED64):
        size = 4 if wire == _FIXED32 else 8
    else:
        raise _Malformed(f"unsupported wire type {wire} (field {field})")
    if pos + size > end:
        raise _Malformed(f"field {field} runs past the end of its message")
    return field, wire, buf[pos:pos + size], pos + size


def _fields(buf):
    """(field number, wire type, value) of every field of one message."""
    pos, end = 0, len(buf)
    while pos < end:
        field, wire, value, pos = _field(buf, pos, end)
        yield field, wire, value


def _decode(b: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Varints of ``b`` beginning at ``starts`` (``lengths`` bytes each) as int64."""
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    picked = b[np.repeat(starts, lengths) + within]
    shift = np.minimum(7 * within, 63).astype(np.uint64)
    parts = (picked & 0x7F).astype(np.uint64) << shift
    # the 7-bit groups of one varint occupy disjoint bits: their sum is their OR (mod 2^64)
    offsets = np.cumsum(lengths) - lengths
    return np.add.reduceat(parts, offsets).view(np.int64)


def packed_varints(buf) -> np.ndarray:
    """Decode a packed run of varints (protobuf int64) at NumPy speed."""
    b = np.frombuffer(buf, np.uint8)
    if b.size == 0:
        return np.zeros(0, np.int64)
    if b[-1] >= 0x80:
        raise _Malformed("truncated packed varints")
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise _Malformed("overlong varint")
    return _decode(b, starts, lengths)


def _int_run(buf, pos: int, end: int, key: int) -> tuple[np.ndarray, int]:
    """A run of one repeated int64 field written unpacked (proto2's default: key, varint, key,
    varint...) from ``pos`` on: (values, position after the run). The bytes are a stream of
    varints alternating the one-byte ``key`` and a value; the run ends at the first other key."""
    b = np.frombuffer(buf[pos:end], np.uint8)
    ends = np.flatnonzero(b < 0x80)  # every complete varint ends on a byte below 0x80
    starts = np.concatenate([[0], ends[:-1] + 1])
    n = ends.size // 2
    keys, values = starts[0:2 * n:2], starts[1:2 * n:2]
    is_key = (b[keys] == key) & (ends[0:2 * n:2] == keys)  # one-byte key varints
    run = n if is_key.all() else int(np.argmin(is_key))
    if run == 0:
        raise _Malformed("truncated repeated int64 field")
    lengths = ends[1:2 * run:2] - values[:run] + 1
    if lengths.max() > 10:
        raise _Malformed("overlong varint")
    return _decode(b, values[:run], lengths), pos + int(ends[2 * run - 1]) + 1


def _float_run(buf, pos: int, end: int, key: int) -> tuple[np.ndarray, int]:
    """A run of one repeated float field written unpacked (key, 4 bytes, key, 4 bytes...)."""
    b = np.frombuffer(buf[pos:end], np.uint8)
    n = b.size // 5
    is_key = b[0:5 * n:5] == key
    run = n if is_key.all() else int(np.argmin(is_key))
    if run == 0:
        raise _Malformed("truncated repeated float field")
    values = b[:5 * run].reshape(run, 5)[:, 1:].copy().view("<f4").reshape(-1)
    return values, pos + 5 * run


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


_INTS_KEY = _ATTR_INTS << 3 | _VARINT
_FLOATS_KEY = _ATTR_FLOATS << 3 | _FIXED32
_STRINGS_KEY = _ATTR_STRINGS << 3 | _BYTES


def _attribute(buf) -> tuple[str, object]:
    name, kind = "", 0
    f = i = s = None
    floats, ints, strings = [], [], []
    pos, end = 0, len(buf)
    while pos < end:
        first = buf[pos]
        if first == _INTS_KEY:  # unpacked repeated ints / floats: a whole run at once
            values, pos = _int_run(buf, pos, end, first)
            ints.append(values)
            continue
        if first == _FLOATS_KEY:
            values, pos = _float_run(buf, pos, end, first)
            floats.append(values)
            continue
        if first == _STRINGS_KEY:  # short strings (node modes): a tight loop
            while pos < end and buf[pos] == _STRINGS_KEY:
                size, start = _varint(buf, pos + 1)
                if start + size > end:
                    raise _Malformed("a string runs past the end of its attribute")
                strings.append(bytes(buf[start:start + size]))
                pos = start + size
            continue
        field, wire, value, pos = _field(buf, pos, end)
        if field == _ATTR_NAME and wire == _BYTES:
            name = bytes(value).decode()
        elif field == _ATTR_TYPE and wire == _VARINT:
            kind = value
        elif field == _ATTR_F and wire == _FIXED32:
            f = float(np.frombuffer(value, "<f4")[0])
        elif field == _ATTR_I and wire == _VARINT:
            i = _signed(value)
        elif field == _ATTR_S and wire == _BYTES:
            s = bytes(value)
        elif field == _ATTR_FLOATS and wire == _BYTES:  # packed
            if len(value) % 4:
                raise _Malformed(f"packed floats of {len(value)} bytes")
            floats.append(np.frombuffer(value, "<f4"))
        elif field == _ATTR_INTS and wire == _BYTES:  # packed
            ints.append(packed_varints(value))
    if kind == 0:  # files from before the type field: the one value that is present
        kind = (_FLOATS if floats else _INTS if ints else _STRINGS if strings else
                _FLOAT if f is not None else _INT if i is not None else _STRING)
    if kind == _FLOATS:
        return name, (np.concatenate(floats) if floats else np.zeros(0, np.float32))
    if kind == _INTS:
        return name, (np.concatenate(ints) if ints else np.zeros(0, np.int64))
    if kind == _STRINGS:
        return name, strings
    if kind == _FLOAT:
        return name, 0.0 if f is None else f
    if kind == _INT:
        return name, 0 if i is None else i
    if kind == _STRING:
        return name, b"" if s is None else s
    raise _Malformed(f"attribute {name!r} has a type this reader does not handle ({kind})")


def _messages(buf, field: int) -> list:
    """Every occurrence of a message-valued (length-delimited) field."""
    return [v for f, w, v in _fields(buf) if f == field and w == _BYTES]


def _input_width(value_info) -> int:
    """The second dimension of a (rows, features) graph input; 0 when not fixed."""
    found = [value_info]
    for field in (_VALUE_TYPE, _TYPE_TENSOR, _TENSOR_SHAPE):
        found = _messages(found[0], field)
        if not found:
            raise _Malformed("graph input has no tensor shape")
    dims = _messages(found[0], _SHAPE_DIM)
    if len(dims) != 2:
        raise _Malformed(f"graph input has {len(dims)} dimensions, expected 2")
    return next((_signed(v) for f, w, v in _fields(dims[1])
                 if f == _DIM_VALUE and w == _VARINT), 0)


def read_tree_ensemble(onnx_bytes: bytes) -> tuple[dict, int]:
    """(attributes of the model's one TreeEnsembleRegressor node, width of its input)."""
    try:
        graphs = _messages(memoryview(onnx_bytes), _MODEL_GRAPH)
        if len(graphs) != 1:
            raise _Malformed(f"expected one graph, found {len(graphs)}")
        nodes, inputs = _messages(graphs[0], _GRAPH_NODE), _messages(graphs[0], _GRAPH_INPUT)
        trees = []
        for node in nodes:
            fields = list(_fields(node))
            op_type = next((bytes(v).decode() for f, w, v in fields
                            if f == _NODE_OP_TYPE and w == _BYTES), "")
            if op_type == "TreeEnsembleRegressor":
                trees.append(dict(_attribute(v) for f, w, v in fields
                                  if f == _NODE_ATTRIBUTE and w == _BYTES))
        if len(trees) != 1:
            raise BundleError(f"expected one TreeEnsembleRegressor node, found {len(trees)}")
        if not inputs:
            raise _Malformed("the graph has no input")
        return trees[0], _input_width(inputs[0])
    except (_Malformed, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise BundleError(f"not a readable ONNX tree-ensemble model: {exc}") from None

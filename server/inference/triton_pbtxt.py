"""The pieces of Triton's model config text (``config.pbtxt``): tensors, parameters, dynamic batching.

Pure text, no Triton import; ``triton_repository`` and ``torch_repository`` put the pieces together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Tensor = tuple[str, str, Sequence[int]]
"""(name, Triton data type, dims) of one input or output."""


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of one graph model. Values chosen by measurement: docs/sam3_serving.md."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int


def _dims(shape: Sequence[int]) -> str:
    return "[ " + ", ".join(str(d) for d in shape) + " ]"


def tensors_text(kind: str, specs: Sequence[Tensor], optional: Sequence[str] = ()) -> str:
    rows = []
    for name, dtype, shape in specs:
        extra = " optional: true" if name in optional else ""
        rows.append(f'  {{ name: "{name}" data_type: {dtype} dims: {_dims(shape)}{extra} }}')
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def parameters_text(values: Mapping[str, str]) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in sorted(values.items()))


def batching_text(b: Batching) -> str:
    preferred = ", ".join(str(n) for n in b.preferred_batch_sizes)
    return (
        f"max_batch_size: {b.max_batch_size}\n"
        f"dynamic_batching {{ preferred_batch_size: [ {preferred} ] "
        f"max_queue_delay_microseconds: {b.max_queue_delay_us} }}\n"
    )

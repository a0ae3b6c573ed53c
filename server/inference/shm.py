"""The /dev/shm a served model repository needs, stated from its configs and checked before Triton starts.

Every python-backend model instance is a stub process that exchanges tensors with the server through
a shared-memory region of its own in /dev/shm. The region starts at ``shm-default-byte-size`` and
grows by ``shm-growth-byte-size`` while tensors need it; a full /dev/shm shows up as a failed request
(or a bus error in the stub) long after the start. So the need is computed from the repository's own
configs (tensor shapes, batch sizes, instance counts: one source, whatever the export's geometry) and
a start is refused with one clear error when /dev/shm cannot hold it.

The bound, per instance, is the largest set of tensors one execution holds in its region at once:

- a python graph model (fixed shapes, dynamic batching): a full batch of its inputs and outputs;
- the ``sam3`` model (no batching): the image it is sent (fixed: the caller resizes it to the model's
  square; a repository taking any size counts the largest photo accepted), the inputs and answers of
  python graph models it calls through BLS (none in the CPU flavour, where the graphs run inside it;
  TensorRT graphs hand device memory, not shared memory), and its answer: at most
  ``max_detections`` kept masks (uint8) with their box, score and indices for each of
  ``ANSWER_PHRASES`` phrases.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from server.errors import InferenceUnavailable
from server.inference.triton_repository import SAM3_MODEL, graph_model

SHM_DIR = Path("/dev/shm")
MIB = 1024 * 1024

_ELEMENT_BYTES = {
    "TYPE_BOOL": 1,
    "TYPE_UINT8": 1,
    "TYPE_INT8": 1,
    "TYPE_UINT16": 2,
    "TYPE_INT16": 2,
    "TYPE_FP16": 2,
    "TYPE_BF16": 2,
    "TYPE_UINT32": 4,
    "TYPE_INT32": 4,
    "TYPE_FP32": 4,
    "TYPE_UINT64": 8,
    "TYPE_INT64": 8,
    "TYPE_FP64": 8,
}
PHOTO_ROWS_PER_REQUEST = 1
"""A ``sam3`` request carries one photo: one row of the vision graph."""
ANSWER_PHRASES = 64
"""Phrases of the largest ``sam3`` answer counted (the text graph's largest batch)."""
DETECTION_EXTRA_BYTES = 4 + 4 + 4 + 16
"""Per kept query besides its mask: phrase and query index (int32), score (fp32), box (4 x fp32)."""


@dataclass(frozen=True)
class ShmPolicy:
    """The python backend's region sizes, passed to Triton as ``--backend-config=python,...``.

    The defaults are Triton 2.51's own (a stub's command line shows them: ``1048576 1048576``), passed
    explicitly so that the server and this check use the same values."""

    default_byte_size: int = 1 * MIB
    """Each stub's region at start."""
    growth_byte_size: int = 1 * MIB
    """Step of a region's growth."""

    def backend_config(self) -> list[str]:
        return [
            f"--backend-config=python,shm-default-byte-size={self.default_byte_size}",
            f"--backend-config=python,shm-growth-byte-size={self.growth_byte_size}",
        ]

    def region_bytes(self, need: int) -> int:
        """A region that holds ``need`` bytes: the default size, grown in whole steps."""
        if need <= self.default_byte_size:
            return self.default_byte_size
        steps = math.ceil((need - self.default_byte_size) / self.growth_byte_size)
        return self.default_byte_size + steps * self.growth_byte_size


DEFAULT_POLICY = ShmPolicy()


@dataclass(frozen=True)
class ModelNeed:
    model: str
    instances: int
    bytes_per_instance: int


@dataclass(frozen=True)
class ShmNeed:
    models: tuple[ModelNeed, ...]
    uncounted: tuple[str, ...] = ()
    """Graph tensors of no fixed size (``model.tensor``): not in the figures."""

    @property
    def total_bytes(self) -> int:
        return sum(m.instances * m.bytes_per_instance for m in self.models)

    def describe(self) -> str:
        return ", ".join(f"{m.model} {m.instances} x {m.bytes_per_instance / MIB:.0f} MiB" for m in self.models)


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _row_bytes(config: model_config_pb2.ModelConfig) -> tuple[int, list[str]]:
    """Bytes of one batch row of every input and output, and the tensors whose size no config fixes
    (variable dims, strings): those are not counted, and the need says so."""
    total, uncounted = 0, []
    for tensor in [*config.input, *config.output]:
        dtype = model_config_pb2.DataType.Name(tensor.data_type)
        if dtype not in _ELEMENT_BYTES or any(d < 0 for d in tensor.dims):
            uncounted.append(f"{config.name}.{tensor.name}")
            continue
        total += _ELEMENT_BYTES[dtype] * math.prod(tensor.dims)
    return total, uncounted


def _instances(config: model_config_pb2.ModelConfig) -> int:
    return sum(group.count or 1 for group in config.instance_group) or 1


def repository_need(configs: Mapping[str, str], max_photo_pixels: int, policy: ShmPolicy) -> ShmNeed:
    """The /dev/shm of every python-backend instance of a repository (model name -> config text)."""
    parsed = {name: _parse(text) for name, text in configs.items()}
    graphs = {name: c for name, c in parsed.items() if name != SAM3_MODEL}
    # Only python-backend graphs pass their tensors through the stub's shared memory.
    rows_bytes = {name: _row_bytes(config) for name, config in graphs.items() if config.backend == "python"}
    uncounted = sorted({t for _, names in rows_bytes.values() for t in names})
    needs = []
    for name, config in sorted(graphs.items()):
        if config.backend == "python":
            need = max(config.max_batch_size, 1) * rows_bytes[name][0]
            needs.append(ModelNeed(name, _instances(config), policy.region_bytes(need)))
    sam3 = parsed.get(SAM3_MODEL)
    if sam3 is not None:
        params = {k: v.string_value for k, v in sam3.parameters.items()}
        python_graphs = {name: c for name, c in graphs.items() if c.backend == "python"}
        rows = {name: max(config.max_batch_size, 1) for name, config in python_graphs.items()}
        if graph_model("vision") in rows:
            rows[graph_model("vision")] = PHOTO_ROWS_PER_REQUEST
        calls = sum(rows[name] * rows_bytes[name][0] for name in python_graphs)
        image = next(t for t in sam3.input if t.name == "image")
        fixed = all(d > 0 for d in image.dims)
        photo = math.prod(image.dims) if fixed else max_photo_pixels * 3  # uint8 RGB as sent
        masks = next(t for t in sam3.output if t.name == "masks")
        per_detection = math.prod(d for d in masks.dims if d > 0) + DETECTION_EXTRA_BYTES
        detections = ANSWER_PHRASES * int(params.get("max_detections", "32"))
        need = photo + calls + detections * per_detection
        needs.append(ModelNeed(SAM3_MODEL, _instances(sam3), policy.region_bytes(need)))
    return ShmNeed(tuple(needs), tuple(uncounted))


def read_repository_configs(repository: Path) -> dict[str, str]:
    return {path.parent.name: path.read_text() for path in sorted(repository.glob("*/config.pbtxt"))}


def available_bytes(path: Path = SHM_DIR) -> int:
    """Free bytes of the filesystem at ``path`` (what new shared-memory regions can still take)."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check(need: ShmNeed, available: Callable[[], int], where: Path = SHM_DIR) -> None:
    """Raise InferenceUnavailable, naming the need and the fix, when ``available()`` is below the need."""
    free = available()
    if free < need.total_bytes:
        raise InferenceUnavailable(
            f"{where} has {free / MIB:.0f} MiB free but the SAM3 models need {need.total_bytes / MIB:.0f} MiB of "
            f"shared memory ({need.describe()}). Give the host or container a larger {where} "
            f"(Docker: --shm-size={math.ceil(need.total_bytes / 1024**3)}g)."
        )

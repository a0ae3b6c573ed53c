"""The exported model on disk, and getting it there: the export runs once, in the model environment.

``server.inference.export`` needs torch and transformers, which the service's environment does not
have: it runs as a subprocess with the model environment's interpreter (``.venv-model``, made by
``make model-venv``). The artefact is cached under ``<data dir>/models/`` and reused on later starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from server.errors import InferenceUnavailable
from server.inference.triton_repository import (
    DECODER_MEMORY_BUDGET_BYTES,
    GRAPHS,
    Geometry,
    Sam3Parameters,
    assemble,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_VENV = REPO_ROOT / ".venv-model"
"""Interpreter environment with torch, transformers, onnxruntime and the Triton server binary."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelArtifact:
    """One exported SAM3: three ONNX graphs, the tokenizer, the assembled Triton repositories."""

    root: Path
    name: str
    meaningful: bool
    score_threshold: float
    max_detections: int
    decoder_bytes_per_phrase: int
    """Decoder working memory per phrase, measured by the export: with a budget, it sizes decoder calls."""
    geometry: Geometry

    @classmethod
    def load(cls, root: Path) -> ModelArtifact:
        try:
            manifest = json.loads((root / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise InferenceUnavailable(f"no usable SAM3 export in {root}: {e}") from e
        return cls(
            root=root,
            name=str(manifest["name"]),
            meaningful=bool(manifest["meaningful"]),
            score_threshold=float(manifest["score_threshold"]),
            max_detections=int(manifest["max_detections"]),
            decoder_bytes_per_phrase=int(manifest["decoder_bytes_per_phrase"]),
            geometry=Geometry.from_manifest(manifest),
        )

    def onnx(self, graph: str) -> Path:
        if graph not in GRAPHS:
            raise ValueError(f"unknown graph {graph!r}")
        return self.root / "onnx" / graph / "model.onnx"

    @property
    def tokenizer_json(self) -> Path:
        return self.root / "tokenizer.json"

    def parameters(self, decoder_memory_budget_bytes: int = DECODER_MEMORY_BUDGET_BYTES) -> Sam3Parameters:
        return Sam3Parameters(
            model_name=self.name,
            meaningful=self.meaningful,
            score_threshold=self.score_threshold,
            decoder_bytes_per_phrase=self.decoder_bytes_per_phrase,
            decoder_memory_budget_bytes=decoder_memory_budget_bytes,
            max_detections=self.max_detections,
        )

    def onnx_files(self) -> dict[str, Path]:
        return {graph: self.onnx(graph) for graph in GRAPHS}

    def cpu_repository(self, target: Path, decoder_memory_budget_bytes: int = DECODER_MEMORY_BUDGET_BYTES) -> Path:
        """Assemble the CPU Triton repository for this model at ``target`` (replaced if present).

        Done at every start rather than at export: the model code then always matches this checkout,
        while the graphs are hard-linked, not copied.
        """
        params = self.parameters(decoder_memory_budget_bytes)
        graphs = {graph: self.onnx(graph).parent for graph in GRAPHS}
        return assemble(target, "cpu", self.geometry, params, graphs, self.tokenizer_json)


def model_python(model_venv: Path = MODEL_VENV) -> Path:
    python = model_venv / "bin" / "python"
    if not python.exists():
        raise InferenceUnavailable(f"the model environment {model_venv} is missing: run `make model-venv`")
    return python


async def ensure_artifact(
    data_dir: Path,
    checkpoint: Path | None,
    *,
    model_venv: Path = MODEL_VENV,
) -> ModelArtifact:
    """Export ``checkpoint`` (None: the tiny random-weight model) unless already exported; load it."""
    source = ["--tiny"] if checkpoint is None else ["--checkpoint", str(checkpoint)]
    command = [str(model_python(model_venv)), "-m", "server.inference.export", *source, "--data-dir", str(data_dir)]
    log.info("SAM3 export (cached after the first run): %s", " ".join(command))
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise InferenceUnavailable(f"SAM3 export failed (exit {process.returncode}): {tail}")
    lines = out.decode().strip().splitlines()
    try:
        root = Path(json.loads(lines[-1])["artifact_dir"])
    except (IndexError, ValueError, KeyError) as e:
        raise InferenceUnavailable(f"SAM3 export printed no artefact: {out[-500:]!r}") from e
    if err and log.isEnabledFor(logging.DEBUG):
        sys.stderr.write(err.decode(errors="replace"))
    return ModelArtifact.load(root)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m server.inference.artifacts <export> --out <repo>``: what the service does at start."""
    parser = argparse.ArgumentParser(description="Assemble the CPU Triton repository of one SAM3 export")
    parser.add_argument("artifact", type=Path, help="the export's folder (with manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="the repository folder to (re)create")
    args = parser.parse_args(argv)
    print(ModelArtifact.load(args.artifact).cpu_repository(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The three graphs of the SAM3 export as torch modules, their example inputs, and the ONNX export.

vision ``image (uint8 [B, S, S, 3]) -> fpn0, fpn1, fpn2``; text ``input_ids, attention_mask ->
text_features``; decoder ``fpn0..2 [B, ...], image_index [K], text_features [K, 32, D],
attention_mask [K, 32], score_threshold [1] -> phrase_index, query_index, scores, boxes, masks`` (kept
queries only). Runs in the model environment (torch, transformers, onnx).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from server.inference import sam3_core
from server.inference.export.decoder_graph import selecting_decoder

EXPORT_SHAPE = (2, 3)
"""Photos and prompts of the traced example; the gates run other sizes to prove the dynamic axes."""


def graph_modules(model: Any, max_detections: int) -> dict[str, Any]:
    """torch modules with the exact inputs and outputs of the vision, text and decoder graphs.

    ``raw`` is SAM3's own detection head (``Sam3Model.forward`` on the features: every query's mask,
    box, logit; the presence logit), the reference of the decoder gate; ``decoder`` is the served graph
    (``decoder_graph.selecting_decoder``: selection first, masks of the kept queries only).
    """
    from torch import nn
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    class Vision(nn.Module):  # type: ignore[misc]
        """Square uint8 image ``[B, S, S, 3]`` → FPN levels; the normalisation is part of the graph."""

        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, image: Any) -> Any:
            f = self.m.vision_encoder(normalise(image)).fpn_hidden_states
            return f[0], f[1], f[2]

    class Text(nn.Module):  # type: ignore[misc]
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    class _TextEmbeds:
        def __init__(self, pooler_output: Any) -> None:
            self.pooler_output = pooler_output

    class RawDecoder(nn.Module):  # type: ignore[misc]
        """Features of B photos, K prompts each naming its photo (``image_index``): broadcast in the graph."""

        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(
            self, fpn0: Any, fpn1: Any, fpn2: Any, image_index: Any, text_features: Any, attention_mask: Any
        ) -> Any:
            encoding = self.m.vision_encoder.neck.position_encoding
            picked = (fpn0[image_index], fpn1[image_index], fpn2[image_index])
            # Sam3Model drops the last FPN level ([:-1]); a fourth entry keeps its indexing intact.
            levels = (*picked, picked[2])
            vision = Sam3VisionEncoderOutput(
                fpn_hidden_states=levels,
                fpn_position_encoding=tuple(encoding(f.shape, f.device, f.dtype) for f in levels),
            )
            o = self.m(vision_embeds=vision, text_embeds=_TextEmbeds(text_features), attention_mask=attention_mask)
            return o.pred_masks, o.pred_boxes, o.pred_logits, o.presence_logits

    raw = RawDecoder(model).eval()
    decoder = selecting_decoder(model, max_detections)
    return {"vision": Vision(model).eval(), "text": Text(model).eval(), "decoder": decoder, "raw": raw}


IMAGE_MEAN = IMAGE_STD = 0.5
"""SAM3's image normalisation (its processor's values), applied inside the vision graph."""


def normalise(image: Any) -> Any:
    """uint8 ``[B, S, S, 3]`` → ``pixel_values [B, 3, S, S]``: /255, then (x - mean) / std."""
    x = image.permute(0, 3, 1, 2).float() / 255.0
    return (x - IMAGE_MEAN) / IMAGE_STD


GRAPH_INPUTS = {
    "vision": [sam3_core.VISION_INPUT],
    "text": ["input_ids", "attention_mask"],
    "decoder": list(sam3_core.DECODER_INPUTS),
}
GRAPH_OUTPUTS = {
    "vision": list(sam3_core.FPN_OUTPUTS),
    "text": ["text_features"],
    "decoder": list(sam3_core.DETECTION_OUTPUTS),
}


class Examples:
    """Seeded inputs of every graph and the PyTorch outputs the gates compare against."""

    def __init__(self, model: Any, modules: dict[str, Any], seed: int) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.modules = modules
        self.generator = torch.Generator().manual_seed(seed)
        self.size = int(model.config.vision_config.backbone_config.image_size)
        self.bos = int(model.config.text_config.bos_token_id)
        self.eos = int(model.config.text_config.eos_token_id)
        self.vocab = int(model.config.text_config.vocab_size)
        self.vision_config = model.config.vision_config

    def images(self, batch: int) -> Any:
        torch = self.torch
        return torch.randint(0, 256, (batch, self.size, self.size, 3), generator=self.generator, dtype=torch.uint8)

    def tokens(self, batch: int) -> tuple[Any, Any]:
        torch = self.torch
        ids = torch.full((batch, sam3_core.TEXT_LENGTH), self.eos, dtype=torch.long)
        mask = torch.zeros(batch, sam3_core.TEXT_LENGTH, dtype=torch.long)
        for row in range(batch):
            n = int(torch.randint(3, 9, (1,), generator=self.generator))  # bos, words, eos
            ids[row, 0] = self.bos
            ids[row, 1 : n - 1] = torch.randint(0, min(self.vocab, self.eos) - 2, (n - 2,), generator=self.generator)
            mask[row, :n] = 1
        return ids, mask

    def export_inputs(self, graph: str, photos: int, prompts: int) -> dict[str, Any]:
        """Inputs with the right shapes and types for tracing (values need not be realistic)."""
        torch = self.torch
        if graph == "vision":
            return {sam3_core.VISION_INPUT: self.images(photos)}
        ids, mask = self.tokens(prompts)
        if graph == "text":
            return {"input_ids": ids, "attention_mask": mask}
        channels = int(self.vision_config.fpn_hidden_size)
        sizes = [int(s[0]) for s in self.vision_config.backbone_feature_sizes]
        feeds: dict[str, Any] = {
            name: torch.randn(photos, channels, s, s, generator=self.generator)
            for name, s in zip(sam3_core.FPN_OUTPUTS, sizes, strict=False)
        }
        width = int(self.model.config.detr_encoder_config.hidden_size)
        feeds["image_index"] = torch.arange(prompts, dtype=torch.long) % photos
        feeds["text_features"] = torch.randn(prompts, sam3_core.TEXT_LENGTH, width, generator=self.generator)
        feeds["attention_mask"] = mask
        feeds["score_threshold"] = torch.tensor([0.0])
        return feeds

    def run(self, module: str, *args: Any) -> list[np.ndarray]:
        with self.torch.no_grad():  # not inference_mode: torch.export rejects inference tensors
            out = self.modules[module](*args)
        out = out if isinstance(out, tuple) else (out,)
        return [t.numpy() for t in out]


def export_onnx(
    module: Any,
    example: dict[str, Any],
    graph: str,
    folder: Path,
    external_data: bool,
    translations: dict[Any, Any] | None = None,
) -> Path:
    """One graph to ``folder/model.onnx``; big weights go straight to an external data file.
    ``translations``: the exporter's ``custom_translation_table`` (the fused attention's)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    photos = torch.export.Dim("photos", min=1, max=64)
    prompts = torch.export.Dim("prompts", min=1, max=1024)
    axes = {
        "vision": ({0: photos},),
        "text": ({0: prompts}, {0: prompts}),
        "decoder": ({0: photos}, {0: photos}, {0: photos}, {0: prompts}, {0: prompts}, {0: prompts}, None),
    }[graph]
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example.values()),
            str(path),
            input_names=GRAPH_INPUTS[graph],
            output_names=GRAPH_OUTPUTS[graph],
            dynamic_shapes=axes,
            opset_version=18,
            dynamo=True,
            external_data=external_data,
            custom_translation_table=translations,
        )
    return path


def open_session(path: Path) -> Any:
    """An onnxruntime session as the served model opens it (``graph_sessions.session_options``)."""
    import onnxruntime as ort

    from server.inference.graph_sessions import session_options

    options = session_options()  # arena off: measure and free the graph's working memory per call
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

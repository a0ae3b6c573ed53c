"""The served decoder graph: SAM3's detection head that selects its queries before it draws their masks.

``Sam3Model`` draws a mask for each of its 200 queries (``einsum`` of every query's mask embedding
with the 288 x 288 pixel embedding) and the caller keeps at most ``max_detections`` of them. Here the
scores (sigmoid(logit) x sigmoid(presence)) and the top-K come first, then the mask product runs for
the kept queries only. The 1x1 ``instance_projection`` of the pixel embedding is folded into the
query side (``(e W) . p + e . b`` instead of ``e . (W p + b)``): it is linear, so the product is the
same, and a ``[C, C]`` matrix on K x max_detections embeddings replaces a convolution over every
pixel. The semantic-segmentation head and the boxes/logits of the earlier decoder layers are not
computed (nothing reads them). Everything else is SAM3's own submodules, called as
``Sam3Model.forward`` calls them for text prompts; the export's gate compares this graph against
``Sam3Model`` itself (``graphs.RawDecoder``), so a change in SAM3 that this module does not follow
fails the export.

Runs in the model environment (torch, transformers).
"""

from __future__ import annotations

from typing import Any

from server.inference import sam3_core


def selecting_decoder(model: Any, max_detections: int) -> Any:
    """The decoder graph's module: features of B photos, K prompts each naming its photo (``image_index``,
    broadcast in the graph), a score threshold; returns the kept queries' phrase, query, score, box
    (x0, y0, x1, y1 in 0..1) and mask (uint8 probability x 255)."""
    import torch
    from torch import nn
    from transformers.masking_utils import create_bidirectional_mask
    from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy, inverse_sigmoid

    class Decoder(nn.Module):  # type: ignore[misc]
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(
            self,
            fpn0: Any,
            fpn1: Any,
            fpn2: Any,
            image_index: Any,
            text_features: Any,
            attention_mask: Any,
            score_threshold: Any,
        ) -> Any:
            m = self.m
            levels = (fpn0[image_index], fpn1[image_index], fpn2[image_index])
            coarse = levels[2]
            coarse_pos = m.vision_encoder.neck.position_encoding(coarse.shape, coarse.device, coarse.dtype)
            text_mask = attention_mask.bool()
            encoded = m.detr_encoder(
                vision_features=[coarse],
                text_features=text_features,
                vision_pos_embeds=[coarse_pos],
                text_mask=text_mask,
            )
            decoded = m.detr_decoder(
                vision_features=encoded.last_hidden_state,
                text_features=encoded.text_features,
                vision_pos_encoding=encoded.pos_embeds_flattened,
                text_mask=text_mask,
                spatial_shapes=encoded.spatial_shapes,
            )
            last = decoded.intermediate_hidden_states[-1:]  # [1, K, Q, C]: the only layer the outputs read
            offsets = m.detr_decoder.box_head(last)[0]
            boxes = box_cxcywh_to_xyxy((inverse_sigmoid(decoded.reference_boxes[-1]) + offsets).sigmoid())
            logits = m.dot_product_scoring(
                decoder_hidden_states=last, text_features=encoded.text_features, text_mask=text_mask
            )[0, ..., 0]
            scores = torch.sigmoid(logits) * torch.sigmoid(decoded.presence_logits[-1])  # [K, Q] * [K, 1]
            top, query = torch.topk(scores, k=max_detections, dim=1)  # sorted, best first
            queries = torch.gather(last[0], 1, query.unsqueeze(-1).expand(-1, -1, last.shape[-1]))
            masks = self._masks(queries, levels, encoded.last_hidden_state, text_features, text_mask)
            phrase, rank = torch.nonzero(top >= score_threshold, as_tuple=True)
            probs = torch.sigmoid(masks[phrase, rank])
            return (
                phrase.to(torch.int32),
                query[phrase, rank].to(torch.int32),
                top[phrase, rank],
                boxes[phrase, query[phrase, rank]],
                torch.round(probs * 255.0).to(torch.uint8),
            )

        def _masks(self, queries: Any, levels: Any, encoder_states: Any, prompt: Any, prompt_mask: Any) -> Any:
            """Sam3MaskDecoder.forward for the selected queries only: mask logits ``[K, N, H, W]``."""
            decoder = self.m.mask_decoder
            normed = decoder.prompt_cross_attn_norm(encoder_states)
            cross_mask = create_bidirectional_mask(
                config=decoder.config, inputs_embeds=normed, encoder_hidden_states=prompt, attention_mask=prompt_mask
            )
            attended, _ = decoder.prompt_cross_attn(query=normed, key=prompt, value=prompt, attention_mask=cross_mask)
            encoder_states = encoder_states + decoder.prompt_cross_attn_dropout(attended)
            pixels = decoder._embed_pixels(backbone_features=list(levels), encoder_hidden_states=encoder_states)
            embeddings = decoder.mask_embedder(queries)  # [K, N, C]
            projection = decoder.instance_projection  # 1x1 conv: folded into the embeddings
            weight = projection.weight[:, :, 0, 0]  # [C_out, C_in]
            product = torch.matmul(torch.matmul(embeddings, weight), pixels.flatten(2))  # [K, N, H*W]
            product = product + torch.matmul(embeddings, projection.bias).unsqueeze(-1)
            return product.unflatten(2, pixels.shape[-2:])

    return Decoder(model).eval()


def mask_query_count(onnx_model: Any) -> int | None:
    """How many queries per prompt the decoder graph draws masks for: the query axis of the product the
    ``masks`` output comes from (the first MatMul/Einsum up its chain of data inputs). SAM3's own head
    gives its ``num_queries``; the selecting decoder ``max_detections``. None when that axis is not a
    fixed size. Reads the shapes the exporter recorded."""
    graph = onnx_model.graph
    producers = {out: node for node in graph.node for out in node.output}
    shapes = {info.name: info.type.tensor_type.shape.dim for info in [*graph.value_info, *graph.output]}
    name = sam3_core.DETECTION_OUTPUTS[-1]
    while (node := producers.get(name)) is not None:
        if node.op_type in ("MatMul", "FusedMatMul", "Einsum"):
            dims = shapes.get(node.output[0])
            if dims is None or len(dims) < 3 or not dims[1].HasField("dim_value"):
                return None
            return int(dims[1].dim_value)
        name = node.input[0]
    raise ValueError(f"no mask product above the decoder graph's {name!r}")

"""Seeded random-weight SAM3 checkpoints (tiny for tests, full size for benchmarks) in the published layout.

Runs in the model environment (torch, transformers); the tokenizer is a byte-level CLIP BPE with one
token per tiny word, so the tiny model tokenizes like the real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.inference import sam3_core

TINY_SEED = 0
TINY_WORDS = ("wall", "floor", "door", "window", "ceiling", "person")
RANDOM_MARKER = "s3_random_weights.json"
"""Written into a random-weight checkpoint: the export then marks the model as not meaningful."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte gets a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_tokenizer() -> Any:
    """A byte-level CLIP BPE tokenizer (full byte coverage, no unknown token) with one token per tiny word."""
    from transformers import CLIPTokenizer

    merges: list[tuple[str, str]] = []
    for word in TINY_WORDS:
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            if pair not in merges:
                merges.append(pair)
            symbols = ["".join(pair), *symbols[2:]]
    base = list(_bytes_to_unicode().values())
    tokens = [*base, *(b + "</w>" for b in base), *("".join(m) for m in merges), "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tiny_config(vocab_size: int, bos: int, eos: int, image_size: int = 112, hidden: int = 32) -> Any:
    """SAM3 with every part kept but shrunk: 2 ViT layers, 1 text layer, 8 queries (~256k parameters)."""
    from transformers import Sam3Config

    grid = image_size // 14
    small = {"hidden_size": hidden, "num_attention_heads": 2, "intermediate_size": 2 * hidden}
    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                **small,
                "num_hidden_layers": 2,
                "image_size": image_size,
                "patch_size": 14,
                "window_size": grid // 2,
                "global_attn_indexes": [1],
                "pretrain_image_size": image_size // 2,
            },
            "fpn_hidden_size": hidden,
            "backbone_feature_sizes": [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
        },
        text_config={
            "model_type": "clip_text_model",
            **small,
            "vocab_size": vocab_size,
            "projection_dim": hidden,
            "num_hidden_layers": 1,
            "max_position_embeddings": sam3_core.TEXT_LENGTH,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        geometry_encoder_config={**small, "num_layers": 1},
        detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": hidden, "num_attention_heads": 2},
    )


def full_config(vocab_size: int, bos: int, eos: int) -> Any:
    """The default (published) SAM3 detector configuration, with the tokenizer's special tokens."""
    from transformers import Sam3Config

    config = Sam3Config()
    text = config.text_config
    text.vocab_size = max(int(text.vocab_size), vocab_size)
    text.bos_token_id, text.eos_token_id, text.pad_token_id = bos, eos, eos
    return config


def build_checkpoint(target: Path, size: str) -> Path:
    """Write a seeded random-weight SAM3 (``tiny`` or ``full``) in the layout of the published checkpoint
    (sam3_video config, ``detector_model.*`` weights, tokenizer files), so that it loads through the
    production loader; a marker file says the weights are random."""
    import torch
    from safetensors.torch import save_file
    from transformers import Sam3Model, Sam3VideoConfig

    torch.manual_seed(TINY_SEED)
    tok = tiny_tokenizer()
    make = tiny_config if size == "tiny" else full_config
    detector = make(len(tok), tok.bos_token_id, tok.eos_token_id)
    model = Sam3Model(detector).eval()
    target.mkdir(parents=True, exist_ok=True)
    Sam3VideoConfig(detector_config=detector).save_pretrained(target)
    weights = {"detector_model." + k: v.contiguous() for k, v in model.state_dict().items()}
    del model
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    del weights
    tok.save_pretrained(target)
    (target / RANDOM_MARKER).write_text(json.dumps({"seed": TINY_SEED, "size": size}))
    return target


def random_spec(checkpoint: Path) -> dict[str, Any] | None:
    marker = checkpoint / RANDOM_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None

"""sam3_core: the resize contract, tokens, text cache, decoder chunks, encode-once orchestration."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from server.inference import sam3_core
from server.inference.sam3_core import F32, I64


def word_tokenizer() -> Tokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "wall": 2, "floor": 3, "door": 4, "[UNK]": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)]
    )
    return tok


def test_resize_keeps_a_constant_image_constant() -> None:
    image = np.full((37, 91, 3), 200, np.uint8)
    out = sam3_core.resize_square(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.all(out == 200)


def test_resize_to_the_same_size_is_identity_and_does_not_mutate() -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    before = image.copy()
    assert np.array_equal(sam3_core.resize_square(image, 16), image)
    assert np.array_equal(image, before)


def test_downscale_weighs_neighbours_with_a_widened_triangle() -> None:
    # 8 -> 4: centres 1, 3, 5, 7 and a triangle twice as wide. Output 0 sees pixels 0..2 with weights
    # (.75, .75, .25)/1.75; output 1 sees pixels 1..4 with weights (.25, .75, .75, .25)/2 (worked by hand).
    row = np.array([0, 0, 255, 255, 0, 0, 255, 255], np.uint8)
    image = np.repeat(np.repeat(row[None, :, None], 8, axis=0), 3, axis=2)
    out = sam3_core.resize_square(image, 4)[0, :, 0].astype(int)
    expected = np.array([round(255 * 0.25 / 1.75), round(255 * 1.5 / 2)])
    assert np.abs(out[:2] - expected).max() <= 1  # fixed-point C resampler: within one level


def test_resize_of_a_large_photo_returns_the_square_model_input() -> None:
    image = np.random.default_rng(1).integers(0, 256, (300, 401, 3), dtype=np.uint8)
    before = image.copy()
    out = sam3_core.resize_square(image, 112)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8 and out.flags.writeable
    assert np.array_equal(image, before)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)]
)
def test_resize_rejects_non_rgb_uint8(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image"):
        sam3_core.resize_square(bad, 8)


def test_tokenize_pads_with_the_end_token_and_masks() -> None:
    ids, mask = sam3_core.tokenize(word_tokenizer(), ["wall", "floor door"])
    assert ids.shape == mask.shape == (2, sam3_core.TEXT_LENGTH)
    assert ids[0, :3].tolist() == [0, 2, 1] and np.all(ids[0, 3:] == 1)
    assert mask[0].sum() == 3 and mask[1].sum() == 4


def test_tokenize_truncates_but_keeps_the_end_token() -> None:
    ids, mask = sam3_core.tokenize(word_tokenizer(), [" ".join(["wall"] * 50)])
    assert mask.sum() == sam3_core.TEXT_LENGTH
    assert ids[0, 0] == 0 and ids[0, -1] == 1 and np.all(ids[0, 1:-1] == 2)


class FakeRunners:
    """Deterministic stand-ins for the three graphs (selection included), counting calls."""

    def __init__(self, queries: int = 3, mask: int = 4) -> None:
        self.calls: dict[str, list[int]] = {"vision": [], "text": [], "decoder": []}
        self.queries, self.mask = queries, mask
        self.features: tuple[F32, F32, F32] | None = None
        self.decoder_features: list[tuple[object, ...]] = []

    def vision(self, image: np.ndarray) -> tuple[F32, F32, F32]:
        assert image.dtype == np.uint8 and image.ndim == 4 and image.shape[-1] == 3
        self.calls["vision"].append(image.shape[0])
        b = image.shape[0]
        self.features = (
            np.ones((b, 2, 4, 4), np.float32),
            np.ones((b, 2, 2, 2), np.float32),
            np.ones((b, 2, 1, 1), np.float32),
        )
        return self.features

    def text(self, input_ids: I64, attention_mask: I64) -> F32:
        self.calls["text"].append(input_ids.shape[0])
        return np.repeat(input_ids[:, :, None].astype(np.float32), 2, axis=2)

    def decoder(
        self, fpn: tuple[F32, F32, F32], image_index: I64, text_features: F32, attention_mask: I64, score_threshold: F32
    ) -> dict[str, np.ndarray]:
        k = text_features.shape[0]
        self.calls["decoder"].append(k)
        self.decoder_features.append(fpn)
        assert image_index.tolist() == [0] * k and fpn[0].shape[0] == 1  # broadcast in the graph, not tiled
        word = text_features[:, 1, 0]  # token id of the first word: 2 wall, 3 floor, 4 door
        scores = 1 / (1 + np.exp(-np.stack([word - 3 + q for q in range(self.queries)], axis=1)))
        phrase, query = np.nonzero(scores >= score_threshold[0])
        n = len(phrase)
        return {
            "phrase_index": phrase.astype(np.int32),
            "query_index": query.astype(np.int32),
            "scores": scores[phrase, query].astype(np.float32),
            "boxes": np.tile(np.array([0.1, 0.2, 0.5, 1.5], np.float32), (n, 1)),
            "masks": np.full((n, self.mask, self.mask), 250, np.uint8),
        }


def test_run_sam3_encodes_once_and_passes_the_same_features_to_every_decoder_call() -> None:
    runners, cache = FakeRunners(), sam3_core.TextFeatureCache()
    image = np.zeros((8, 8, 3), np.uint8)
    found = sam3_core.run_sam3(
        image,
        ["wall", "floor", "door"],
        runners=runners,
        tokenizer=word_tokenizer(),
        cache=cache,
        score_threshold=0.5,
        phrases_per_call=2,
    )
    assert runners.calls == {"vision": [1], "text": [3], "decoder": [2, 1]}
    assert all(f is runners.features for f in runners.decoder_features)  # the same arrays, never copied
    # score = sigmoid(word - 3 + q) >= 0.5  <=>  word + q >= 3; phrase indices shifted per decoder call
    kept = sorted(zip(found.phrase_index.tolist(), found.query_index.tolist(), strict=True))
    assert kept == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert found.masks.dtype == np.uint8 and found.masks.shape == (8, 4, 4)
    photo = sam3_core.in_photo(found, (30, 40))
    assert photo.boxes[0].tolist() == pytest.approx([4.0, 6.0, 20.0, 30.0])  # y1 clipped to the photo
    assert np.array_equal(found.boxes[0], np.array([0.1, 0.2, 0.5, 1.5], np.float32))  # not mutated


def test_run_sam3_refuses_an_image_the_caller_did_not_resize() -> None:
    with pytest.raises(ValueError, match="square"):
        sam3_core.run_sam3(
            np.zeros((8, 9, 3), np.uint8),
            ["wall"],
            runners=FakeRunners(),
            tokenizer=word_tokenizer(),
            cache=sam3_core.TextFeatureCache(),
            score_threshold=0.5,
            phrases_per_call=2,
        )


def test_run_sam3_with_nothing_kept_returns_empty_detections() -> None:
    found = sam3_core.run_sam3(
        np.zeros((8, 8, 3), np.uint8),
        ["wall", "floor"],
        runners=FakeRunners(),
        tokenizer=word_tokenizer(),
        cache=sam3_core.TextFeatureCache(),
        score_threshold=1.0,
        phrases_per_call=1,
    )
    assert len(found.scores) == 0 and found.masks.shape == (0, 4, 4) and found.boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("budget", "per_phrase", "expected"), [(10, 3, 3), (2, 3, 1), (3 << 30, 1 << 30, 3), (0, 5, 1)]
)
def test_phrases_per_call_fits_the_memory_budget(budget: int, per_phrase: int, expected: int) -> None:
    assert sam3_core.phrases_per_call(budget, per_phrase) == expected


def test_phrases_per_call_needs_a_measured_cost() -> None:
    with pytest.raises(ValueError, match="bytes_per_phrase"):
        sam3_core.phrases_per_call(10, 0)


def test_text_features_are_cached_per_phrase() -> None:
    runners, cache = FakeRunners(), sam3_core.TextFeatureCache(capacity=2)
    tok = word_tokenizer()
    cache.get_many(["wall", "floor"], tok, runners)
    feats, masks = cache.get_many(["floor", "wall", "floor"], tok, runners)
    assert runners.calls["text"] == [2]
    assert feats.shape == (3, sam3_core.TEXT_LENGTH, 2) and masks.shape == (3, sam3_core.TEXT_LENGTH)
    assert cache.hits == 3 and cache.misses == 2
    cache.get_many(["door"], tok, runners)  # evicts the least recently used: "floor" (then "wall" was used)
    cache.get_many(["wall"], tok, runners)
    cache.get_many(["floor"], tok, runners)
    assert runners.calls["text"] == [2, 1, 1]

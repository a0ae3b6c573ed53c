"""The domain presets: a palette (server.palettes), protect defaults and output sets per domain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from applier.protect import COMPUTED_LAYERS
from applier.templates import Template
from server.palettes import FASHION_PALETTE, INTERIOR_PALETTE, PROFILE_PALETTE, SELLER_PALETTE, ConceptSpec

__all__ = ["COMPUTED_PROTECT_LAYERS", "PRESETS", "ConceptSpec", "OutputSetSpec", "PresetSpec", "TemplateSpec"]

COMPUTED_PROTECT_LAYERS: tuple[str, ...] = COMPUTED_LAYERS
"""Protect layers the applier computes (not SAM3 concepts); any concept of a preset may also be one."""

TemplateSpec = Template
"""A preset's template is the applier's: one definition, validated when the presets are built."""


@dataclass(frozen=True)
class OutputSetSpec:
    id: str
    name: str
    templates: tuple[TemplateSpec, ...]


@dataclass(frozen=True)
class PresetSpec:
    id: str
    name: str
    description: str
    phase: int
    concepts: tuple[ConceptSpec, ...]
    protect_defaults: tuple[str, ...]
    output_sets: tuple[OutputSetSpec, ...]

    def concept(self, concept_id: str) -> ConceptSpec | None:
        return next((c for c in self.concepts if c.id == concept_id), None)

    @property
    def concept_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.concepts)

    def output_set(self, set_id: str | None) -> OutputSetSpec | None:
        """The named set, or the preset's first (default) set when ``set_id`` is empty."""
        if not set_id:
            return self.output_sets[0]
        return next((s for s in self.output_sets if s.id == set_id), None)


INTERIOR = PresetSpec(
    id="interior",
    name="Interior",
    description="Rooms for interior designers and home sellers: walls, floors, tiles and fittings.",
    phase=1,
    concepts=INTERIOR_PALETTE,
    protect_defaults=("Text", "Logo", "edges", "highlights"),
    output_sets=(
        OutputSetSpec(
            "listing",
            "Listing photos",
            (
                TemplateSpec("listing_4x3", 1600, 1200, "fill", "jpeg", 88),
                TemplateSpec("square_1080", 1080, 1080, "fill", "jpeg", 88),
                TemplateSpec("original_fit_2048", 2048, 2048, "fit", "jpeg", 92),
            ),
        ),
        OutputSetSpec(
            "portfolio",
            "Portfolio",
            (
                TemplateSpec("portfolio_3x2", 2400, 1600, "fill", "webp", 90),
                TemplateSpec("portfolio_png", 1600, 1600, "fit", "png"),
            ),
        ),
    ),
)

SELLER = PresetSpec(
    id="seller",
    name="Online seller",
    description="Product photos for marketplaces: clean backgrounds, soft shadows, consistent packages.",
    phase=1,
    concepts=SELLER_PALETTE,
    protect_defaults=("Logo", "Text", "highlights"),
    output_sets=(
        OutputSetSpec(
            "marketplace",
            "Marketplace",
            (
                TemplateSpec("main_2000_white", 2000, 2000, "pad", "jpeg", 90, "#ffffff"),
                TemplateSpec("square_1080", 1080, 1080, "pad", "jpeg", 88, "#ffffff"),
                TemplateSpec("cutout_png", 1600, 1600, "pad", "png", 90, "transparent"),
                TemplateSpec("detail_webp", 1200, 1500, "fill", "webp", 88, "#ffffff"),
            ),
        ),
        OutputSetSpec(
            "social",
            "Social",
            (
                TemplateSpec("post_1080", 1080, 1080, "pad", "jpeg", 88, "#f5f5f5"),
                TemplateSpec("story_1080x1920", 1080, 1920, "pad", "jpeg", 88, "#f5f5f5"),
            ),
        ),
    ),
)

PROFILE = PresetSpec(
    id="profile",
    name="Profile and branding",
    description="Profile pictures and brand images: clean backgrounds, consistent look across a team.",
    phase=2,
    concepts=PROFILE_PALETTE,
    protect_defaults=("Face", "Logo", "Text"),
    output_sets=(
        OutputSetSpec(
            "profile",
            "Profile pictures",
            (
                TemplateSpec("avatar_800", 800, 800, "fill", "jpeg", 90),
                TemplateSpec("avatar_400_png", 400, 400, "fill", "png"),
                TemplateSpec("banner_1584x396", 1584, 396, "fill", "jpeg", 88),
            ),
        ),
    ),
)

FASHION = PresetSpec(
    id="fashion",
    name="Fashion",
    description="Apparel on models or flat lays: garments, shoes, accessories and backgrounds.",
    phase=2,
    concepts=FASHION_PALETTE,
    protect_defaults=("Logo", "Text", "highlights"),
    output_sets=(
        OutputSetSpec(
            "lookbook",
            "Lookbook",
            (
                TemplateSpec("portrait_1200x1800", 1200, 1800, "pad", "jpeg", 90),
                TemplateSpec("square_1080", 1080, 1080, "pad", "jpeg", 88),
            ),
        ),
    ),
)

PRESETS: Mapping[str, PresetSpec] = MappingProxyType({p.id: p for p in (INTERIOR, SELLER, PROFILE, FASHION)})


def get_preset(preset_id: str) -> PresetSpec | None:
    return PRESETS.get(preset_id)

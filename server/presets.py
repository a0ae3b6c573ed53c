"""The domain presets: the concept palette, protect defaults and output sets of each domain.

A concept's ``id`` is the key used in rules, instance choices and object keys ("Wall"); its
``prompts`` are the SAM3 text phrases that find it (several phrases are merged into one numbered
list of instances). Default actions are validated against ``applier.params`` by a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from applier.protect import COMPUTED_LAYERS
from applier.templates import Template

COMPUTED_PROTECT_LAYERS: tuple[str, ...] = COMPUTED_LAYERS
"""Protect layers the applier computes (not SAM3 concepts); any concept of a preset may also be one."""

TemplateSpec = Template
"""A preset's template is the applier's: one definition, validated when the presets are built."""


@dataclass(frozen=True)
class ConceptSpec:
    id: str
    name: str
    prompts: tuple[str, ...]
    default_action: str
    default_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    protectable: bool = False


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


def _c(
    cid: str,
    prompts: tuple[str, ...],
    action: str,
    params: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    protectable: bool = False,
) -> ConceptSpec:
    return ConceptSpec(cid, name or cid, prompts, action, MappingProxyType(params or {}), protectable)


_TEXT = _c("Text", ("text", "lettering"), "keep", protectable=True)
_LOGO = _c("Logo", ("logo", "brand mark"), "keep", protectable=True)

INTERIOR = PresetSpec(
    id="interior",
    name="Interior",
    description="Rooms for interior designers and home sellers: walls, floors, tiles and fittings.",
    phase=1,
    concepts=(
        _c("Wall", ("wall",), "recolor", {"value": "white"}),
        _c("Floor", ("floor",), "material", {"texture": "wood"}),
        _c("Ceiling", ("ceiling",), "recolor", {"value": "white"}),
        _c("Tile", ("tile", "tiled wall"), "material", {"texture": "tiles"}),
        _c("Grout", ("grout", "grout line"), "recolor", {"value": "#d9d6cf"}),
        _c("Window", ("window",), "keep"),
        _c("Door", ("door",), "recolor", {"value": "#f4f1ea"}),
        _c("Cabinet", ("cabinet", "kitchen cabinet"), "recolor", {"value": "#ece8df"}),
        _c("Countertop", ("countertop", "kitchen counter"), "material", {"texture": "marble"}),
        _c("Backsplash", ("backsplash",), "material", {"texture": "tiles"}),
        _TEXT,
        _LOGO,
    ),
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
    concepts=(
        _c("Product", ("product",), "keep"),
        _c("Background", ("background",), "remove", {"mode": "transparent"}),
        _c("Shadow", ("shadow",), "shadow", {"mode": "soften"}),
        _c("Prop", ("prop", "decoration"), "remove", {"mode": "inpaint"}),
        _TEXT,
        _LOGO,
    ),
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
    concepts=(
        _c("Person", ("person",), "keep"),
        _c("Face", ("face",), "keep", protectable=True),
        _c("Hair", ("hair",), "keep"),
        _c("Clothing", ("clothing", "shirt"), "keep"),
        _c("Background", ("background",), "remove", {"mode": "color", "color": "#eef1f5"}),
        _TEXT,
        _LOGO,
    ),
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
    concepts=(
        _c("Garment", ("garment", "clothing"), "keep"),
        _c("Model", ("person", "model"), "keep"),
        _c("Shoes", ("shoes",), "keep"),
        _c("Accessory", ("bag", "accessory"), "keep"),
        _c("Background", ("background",), "remove", {"mode": "color", "color": "#ffffff"}),
        _TEXT,
        _LOGO,
    ),
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

"""Object keys: the contract's layout, built only from validated parts.

Every key a user can influence is assembled here from ids that match strict patterns, so a key can
never hold ``..``, a leading ``/``, a backslash, a control character or anything a filesystem or an
S3 path could read differently. ``validate_key`` states that grammar once; the local store and the
gateway check every key they receive against it.

Layout (contract, "Object keys"):

    inputs/{user}/{job}/{idx}.jpg
    outputs/{user}/{job}/{idx}_result.png
    outputs/{user}/{job}/{idx}/{template}.{ext}      one rendition per output-set template
    masks/{user}/{job}/{idx}_{concept}.png
    masks/{user}/{job}/{idx}/{concept}/{number}.png  one mask per instance (#1..#N)
    masks/{user}/{job}/{idx}_instances.json
    previews/{user}/{job}/{idx}_thumb.jpg
    sets/{user}/{job}/set.zip
"""

from __future__ import annotations

import re
import uuid

MAX_KEY_LENGTH = 1024
"""S3's own limit on key length (bytes; our keys are ASCII)."""

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EXT = re.compile(r"[a-z0-9]{1,8}")
# A segment never starts with a dot, so "." and ".." and hidden files cannot be spelled.
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"
_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it obeys the key grammar, else raise ``ValueError``.

    Grammar: one or more ``/``-separated segments of ``[A-Za-z0-9._-]`` that do not start with a dot,
    no ``..`` anywhere, at most ``MAX_KEY_LENGTH`` characters.
    """
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValueError("object key must be a non-empty string of at most 1024 characters")
    if _KEY.fullmatch(key) is None or ".." in key:
        raise ValueError(f"object key {key!r} is not a valid key")
    return key


def _id(value: str | uuid.UUID, name: str) -> str:
    text = str(value) if isinstance(value, uuid.UUID) else value
    if not isinstance(text, str) or _ID.fullmatch(text) is None:
        raise ValueError(f"{name} must be a lowercase id of [a-z0-9-] (a UUID), got {value!r}")
    return text


def _idx(value: int) -> int:
    # bool is an int subclass; True as an item index is a bug upstream, not item 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"idx must be a non-negative integer, got {value!r}")
    return value


def _name(value: str, name: str) -> str:
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise ValueError(f"{name} must match [A-Za-z0-9_-]{{1,64}}, got {value!r}")
    return value


def _job(user_id: str | uuid.UUID, job_id: str | uuid.UUID) -> str:
    return f"{_id(user_id, 'user_id')}/{_id(job_id, 'job_id')}"


def input_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID, idx: int) -> str:
    """The uploaded photo of item ``idx``."""
    return f"inputs/{_job(user_id, job_id)}/{_idx(idx)}.jpg"


def output_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID, idx: int) -> str:
    """The full-size result of item ``idx``."""
    return f"outputs/{_job(user_id, job_id)}/{_idx(idx)}_result.png"


def rendition_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID, idx: int, template: str, ext: str) -> str:
    """Item ``idx`` rendered to one output-set ``template`` (``ext`` e.g. ``jpg``, ``png``, ``webp``)."""
    if not isinstance(ext, str) or _EXT.fullmatch(ext) is None:
        raise ValueError(f"ext must match [a-z0-9]{{1,8}}, got {ext!r}")
    return f"outputs/{_job(user_id, job_id)}/{_idx(idx)}/{_name(template, 'template')}.{ext}"


def mask_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID, idx: int, concept: str) -> str:
    """The combined mask of ``concept`` on item ``idx``."""
    return f"masks/{_job(user_id, job_id)}/{_idx(idx)}_{_name(concept, 'concept')}.png"


def instance_mask_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID, idx: int, concept: str, number: int) -> str:
    """The mask of instance #``number`` (from 1) of ``concept`` on item ``idx``.

    A folder per concept rather than ``{idx}_{concept}_{number}.png``: the flat form would collide
    with the combined mask of a concept literally named ``Wall_2``.
    """
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ValueError(f"number must be an integer >= 1, got {number!r}")
    return f"masks/{_job(user_id, job_id)}/{_idx(idx)}/{_name(concept, 'concept')}/{number}.png"


def instances_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID, idx: int) -> str:
    """Every instance found on item ``idx`` (boxes, scores, areas, mask keys) as JSON."""
    return f"masks/{_job(user_id, job_id)}/{_idx(idx)}_instances.json"


def preview_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID, idx: int) -> str:
    """A small JPEG thumbnail of item ``idx``'s result."""
    return f"previews/{_job(user_id, job_id)}/{_idx(idx)}_thumb.jpg"


def set_key(user_id: str | uuid.UUID, job_id: str | uuid.UUID) -> str:
    """The whole output package of a job: every rendition plus ``manifest.json``."""
    return f"sets/{_job(user_id, job_id)}/set.zip"


JOB_FOLDERS = ("inputs", "outputs", "masks", "previews", "sets")
"""Every top-level folder of the layout; each holds one sub-folder per job."""


def job_prefixes(user_id: str | uuid.UUID, job_id: str | uuid.UUID) -> tuple[str, ...]:
    """The folders holding every object of one job (what a purge deletes)."""
    return tuple(f"{folder}/{_job(user_id, job_id)}/" for folder in JOB_FOLDERS)


DOWNLOAD_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A download file name: plain enough for ``Content-Disposition`` without quoting or escaping."""


def validate_filename(name: str) -> str:
    if not isinstance(name, str) or DOWNLOAD_FILENAME.fullmatch(name) is None:
        raise ValueError(f"a download file name must match {DOWNLOAD_FILENAME.pattern}, got {name!r}")
    return name


def download_filename(key: str) -> str:
    """The name a download of ``key`` is saved under: ``s3-{job id prefix}-{path after the job}``,
    e.g. ``sets/{u}/{j}/set.zip`` -> ``s3-1f2e3d4c-set.zip``, a rendition -> ``s3-1f2e3d4c-0-square_1080.jpg``.
    Keys outside a job keep their last segment."""
    parts = validate_key(key).split("/")
    if len(parts) >= 4:
        return validate_filename(f"s3-{parts[2][:8]}-{'-'.join(parts[3:])}")
    return validate_filename(parts[-1])

"""Local presigned URLs: bound to method, key, expiry and content type; anything else is refused."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from server.errors import Forbidden
from server.storage.signing import UrlSigner

SECRET = b"k" * 32
KEY = "inputs/u1/j1/0.jpg"
BASE = "http://127.0.0.1:8080"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _split(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path.removeprefix("/objects/"), dict(parse_qsl(parts.query))


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def signer(clock: Clock) -> UrlSigner:
    return UrlSigner(SECRET, clock=clock)


def test_url_shape(signer: UrlSigner) -> None:
    signed = signer.sign(BASE + "/", method="PUT", key=KEY, expires_s=600, content_type="image/jpeg")
    assert signed.url.startswith(f"{BASE}/objects/{KEY}?method=PUT&expires=1800000600&sig=")
    assert signed.expires == 1_800_000_600


def test_a_fresh_url_verifies(signer: UrlSigner) -> None:
    key, query = _split(signer.sign(BASE, method="PUT", key=KEY, expires_s=60, content_type="image/jpeg").url)
    signer.verify(method="PUT", key=key, query=query, content_type="image/jpeg")
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    signer.verify(method="GET", key=key, query=query)
    signer.verify(method="HEAD", key=key, query=query)


def test_expired_url_is_refused(signer: UrlSigner, clock: Clock) -> None:
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    clock.now += 60
    signer.verify(method="GET", key=key, query=query)
    clock.now += 1
    with pytest.raises(Forbidden, match="expired"):
        signer.verify(method="GET", key=key, query=query)


def test_extending_the_expiry_breaks_the_signature(signer: UrlSigner, clock: Clock) -> None:
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    clock.now += 120
    with pytest.raises(Forbidden, match="signature"):
        signer.verify(method="GET", key=key, query={**query, "expires": str(int(clock.now) + 60)})


@pytest.mark.parametrize("other", ["inputs/u1/j1/1.jpg", "inputs/u2/j1/0.jpg", "outputs/u1/j1/0_result.png"])
def test_url_for_one_key_does_not_open_another(signer: UrlSigner, other: str) -> None:
    _, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    with pytest.raises(Forbidden):
        signer.verify(method="GET", key=other, query=query)


def test_get_url_cannot_be_used_to_upload(signer: UrlSigner) -> None:
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    with pytest.raises(Forbidden):
        signer.verify(method="PUT", key=key, query=query, content_type="image/jpeg")
    # Rewriting the claimed method does not help either: the method is inside the signature.
    with pytest.raises(Forbidden, match="signature"):
        signer.verify(method="PUT", key=key, query={**query, "method": "PUT"}, content_type="")


def test_put_url_cannot_be_used_to_download(signer: UrlSigner) -> None:
    key, query = _split(signer.sign(BASE, method="PUT", key=KEY, expires_s=60, content_type="image/jpeg").url)
    with pytest.raises(Forbidden):
        signer.verify(method="GET", key=key, query=query)
    with pytest.raises(Forbidden):
        signer.verify(method="GET", key=key, query={**query, "method": "GET"})


def test_upload_content_type_is_bound(signer: UrlSigner) -> None:
    key, query = _split(signer.sign(BASE, method="PUT", key=KEY, expires_s=60, content_type="image/jpeg").url)
    for content_type in ("text/html", "image/jpeg; charset=x", None):
        with pytest.raises(Forbidden):
            signer.verify(method="PUT", key=key, query=query, content_type=content_type)


def test_tampered_signature_is_refused(signer: UrlSigner) -> None:
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    sig = query["sig"]
    for forged in (sig[:-1] + ("A" if sig[-1] != "A" else "B"), sig[:-1], "", "é" * 43):
        with pytest.raises(Forbidden):
            signer.verify(method="GET", key=key, query={**query, "sig": forged})


def test_missing_or_malformed_parameters_are_refused(signer: UrlSigner) -> None:
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    for name in ("method", "expires", "sig"):
        with pytest.raises(Forbidden):
            signer.verify(method="GET", key=key, query={k: v for k, v in query.items() if k != name})
    for expires in ("-1", "1e9", "", "9" * 13):
        with pytest.raises(Forbidden):
            signer.verify(method="GET", key=key, query={**query, "expires": expires})


def test_another_secret_does_not_verify(signer: UrlSigner, clock: Clock) -> None:
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    with pytest.raises(Forbidden):
        UrlSigner(b"q" * 32, clock=clock).verify(method="GET", key=key, query=query)


def test_traversal_keys_are_neither_signed_nor_verified(signer: UrlSigner) -> None:
    with pytest.raises(ValueError):
        signer.sign(BASE, method="GET", key="../etc/passwd", expires_s=60)
    _, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    with pytest.raises(Forbidden):
        signer.verify(method="GET", key="inputs/u1/j1/../../../etc/passwd", query=query)


def test_signing_refuses_bad_arguments(signer: UrlSigner) -> None:
    with pytest.raises(ValueError):
        signer.sign(BASE, method="DELETE", key=KEY, expires_s=60)
    with pytest.raises(ValueError):
        signer.sign(BASE, method="PUT", key=KEY, expires_s=60)
    with pytest.raises(ValueError):
        signer.sign(BASE, method="PUT", key=KEY, expires_s=60, content_type="image/jpeg\r\nX-Evil: 1")
    with pytest.raises(ValueError):
        signer.sign(BASE, method="GET", key=KEY, expires_s=60, content_type="image/jpeg")
    with pytest.raises(ValueError):
        UrlSigner(b"short")


def test_derived_signers_agree_and_differ_from_the_master_secret(clock: Clock) -> None:
    master = "m" * 43
    one = UrlSigner.from_master_secret(master, clock=clock)
    two = UrlSigner.from_master_secret(master, clock=clock)
    key, query = _split(one.sign(BASE, method="GET", key=KEY, expires_s=60).url)
    two.verify(method="GET", key=key, query=query)
    with pytest.raises(Forbidden):
        UrlSigner(master.encode(), clock=clock).verify(method="GET", key=key, query=query)


def test_a_download_file_name_is_signed(signer: UrlSigner) -> None:
    key, query = _split(signer.sign(BASE, method="GET", key=KEY, expires_s=60, filename="s3-1-set.zip").url)
    assert query["filename"] == "s3-1-set.zip"
    signer.verify(method="GET", key=key, query=query)
    with pytest.raises(Forbidden, match="signature"):
        signer.verify(method="GET", key=key, query={**query, "filename": "evil.zip"})
    with pytest.raises(Forbidden, match="signature"):
        signer.verify(method="GET", key=key, query={k: v for k, v in query.items() if k != "filename"})
    with pytest.raises(Forbidden, match="file name"):
        signer.verify(method="GET", key=key, query={**query, "filename": 'a"; x=.zip'})


def test_a_file_name_must_be_plain_and_only_on_downloads(signer: UrlSigner) -> None:
    for bad in ('a"b.zip', "../x.zip", ".hidden", "a b.zip", ""):
        with pytest.raises(ValueError, match="file name"):
            signer.sign(BASE, method="GET", key=KEY, expires_s=60, filename=bad)
    with pytest.raises(ValueError, match="only GET"):
        signer.sign(BASE, method="PUT", key=KEY, expires_s=60, content_type="image/jpeg", filename="a.jpg")

"""Fuzzing the S/MIME engine: untrusted bytes may only fail as ``smime.SmimeError``.

A mail gateway feeds every message it relays to ``verify``/``decrypt``/``unwrap``. Whatever
arrives (random noise, a message cut off in transit, a flipped bit, a hostile structure), the
engine must answer with a ``Verdict``/result or one of its typed errors, never with an
IndexError, TypeError, AttributeError, RecursionError, ... (see ``smime/errors.py``).

What is fed, to ``verify``, ``decrypt``, ``unwrap`` (whole messages) and ``verify_signed_data``,
``decrypt_enveloped`` (the decoded CMS DER):

- random bytes, raw and behind a CMS ContentInfo header;
- every prefix of real messages (ours: RSA/EC, signed, encrypted with each cipher, compressed;
  and every ``.eml`` of the NSS corpus), of the MIME text and of the DER (strided, plus every
  cut in the first and last bytes);
- random byte mutations of the DER, re-wrapped into the message, and of the MIME text;
- structure-aware edits of the BER tree, certificates included: random splices (an element
  replaced by noise, an odd value, another seed's element or a whole other structure, cut
  short, dropped or doubled), and exhaustively every primitive made odd (unknown OIDs, odd
  versions and times, garbled strings) and every element dropped or doubled;
- MIME-level junk, hand-written and generated.

And where it is cheap, the meaning: tampering with signed content or a signature value never
yields a VALID verdict, edits elsewhere never make other content VALID; tampering with AES-GCM
data never yields a plaintext, and edits elsewhere never yield another one.

Hypothesis runs derandomized (the same inputs every run); ``FUZZ_RANDOM=1`` explores afresh.
"""

from __future__ import annotations

import datetime as dt
import os
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from asn1crypto import cms, core
from cryptography import x509
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import smime
from smime import mime
from smime.algorithms import GcmParams
from tests.conftest import NSS, credential, message

pytestmark = [
    # Fuzzed certificates carry negative serial numbers, on purpose.
    pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive"),
    # Hypothesis' falsifying-example printer imports libcst, which trips this on 3.11.
    pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated"),
]

# --- budgets ----------------------------------------------------------------------------

FUZZ = settings(
    deadline=None,
    database=None,  # no example database: the inputs below are regenerated every run
    # No "explain" phase: its line tracing costs a red run minutes, for a hint we do not need.
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    # The same inputs every run, so that a red test stays red until the engine is fixed;
    # FUZZ_RANDOM=1 explores fresh ones (and --hypothesis-seed=N replays a run).
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    report_multiple_bugs=False,  # one shrunk failure per test keeps a red run short
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)
CUTS = 200  # strided cut points per input for the truncation tests
CUT_HEAD = 64  # ... plus every cut in the first bytes
CUT_TAIL = 16  # ... and the last bytes

# --- the inputs we start from -----------------------------------------------------------

OUR_SIGNED = ("rsa.detached", "rsa.opaque", "rsa-pss.detached", "ec256.detached",
              "ec384.opaque")
OUR_GCM = ("rsa.aes256-gcm", "ec256.aes256-gcm", "rsa-oaep+ec384.aes256-gcm")
OUR_ENCRYPTED = (*(f"{kind}.{cipher.value}" for kind in ("rsa", "ec256")
                   for cipher in smime.Cipher if cipher is not smime.Cipher.AES256_GCM),
                 *OUR_GCM, "rsa.signed+aes256-cbc", "rsa.zlib+aes256-cbc")
OUR_SEEDS = (*OUR_SIGNED, *OUR_ENCRYPTED, "zlib")
NSS_SEEDS = tuple(sorted(p.name for p in NSS.glob("*.eml"))) or ("<the NSS corpus is missing>",)
ALL_SEEDS = (*OUR_SEEDS, *NSS_SEEDS)
# Signed messages that verify VALID as they are (checked by a test below).
VALID_SIGNED = (*OUR_SIGNED, "alice.dsig.SHA1.multipart.eml", "alice.dsig.SHA256.multipart.eml",
                "alice.sig.SHA1.opaque.eml", "alice.sig.SHA256.opaque.eml",
                "alice.env.sig.SHA256.opaque.eml")


@dataclass(frozen=True, repr=False)
class Seed:
    """A real message, split around the base64 of its outermost CMS structure."""

    name: str
    message: bytes
    der: bytes
    content: bytes | None  # the signed part of a multipart/signed
    head: bytes  # the message before the base64 block
    tail: bytes  # and after it

    def __repr__(self) -> str:
        return f"<seed {self.name}>"

    def wrap(self, der: bytes) -> bytes:
        """The same message around other DER."""
        return self.head + mime.b64encode_lines(der).rstrip(b"\r\n") + self.tail


def make_seed(name: str, data: bytes) -> Seed:
    entity = mime.Entity.parse(data)
    content_type = entity.content_type()
    content = None
    holder = entity
    if content_type.mime_type == "multipart/signed":
        content, signature = mime.split_multipart(entity.body, content_type.param("boundary"))
        holder = mime.Entity.parse(signature)
    block = holder.body.rstrip(b"\r\n")
    assert data.count(block) == 1, name
    at = data.index(block)
    return Seed(name, data, mime.decode_body(holder), content, data[:at], data[at + len(block):])


class Target:
    """What the engine is called with: every key and trust anchor we have, and "now"."""

    def __init__(self, keys: Sequence[smime.Credential], anchors: Sequence[x509.Certificate],
                 at: dt.datetime) -> None:
        self.keys = tuple(keys)
        self.anchors = tuple(anchors)
        self.at = at

    def __repr__(self) -> str:  # short, for Hypothesis' falsifying examples
        return f"<{len(self.keys)} keys, {len(self.anchors)} anchors, at {self.at:%Y-%m-%d}>"


@pytest.fixture(scope="module")
def when() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def target(pki, alice, bob, carol_ec, dave_ec384, nss, when) -> Target:
    nss_ca = smime.load_certificates((nss / "TestCA.pem").read_bytes())[0]
    nss_keys = [smime.load_pkcs12((nss / f"{who}.p12").read_bytes(), b"nss")
                for who in ("Bob", "Alice")]
    keys = (*(credential(i) for i in (bob, alice, carol_ec, dave_ec384)), *nss_keys)
    return Target(keys, (pki.cert, nss_ca), when + dt.timedelta(minutes=1))


def our_messages(alice, bob, carol_ec, dave_ec384, when) -> Iterator[tuple[str, bytes]]:
    plain = message()
    signer = credential(alice)
    yield "rsa.detached", smime.sign(plain, signer, signing_time=when)
    yield "rsa.opaque", smime.sign(plain, signer, signing_time=when, opaque=True)
    yield "rsa-pss.detached", smime.sign(plain, signer, signing_time=when, pss=True)
    yield "ec256.detached", smime.sign(message(sender=carol_ec.email), credential(carol_ec),
                                       signing_time=when)
    yield "ec384.opaque", smime.sign(message(sender=dave_ec384.email), credential(dave_ec384),
                                     signing_time=when, opaque=True)
    for cipher in smime.Cipher:
        yield f"rsa.{cipher.value}", smime.encrypt(plain, [smime.Recipient(bob.cert)], cipher)
        yield f"ec256.{cipher.value}", smime.encrypt(plain, [smime.Recipient(carol_ec.cert)],
                                                     cipher)
    yield "rsa-oaep+ec384.aes256-gcm", smime.encrypt(
        plain, [smime.Recipient(bob.cert, oaep=True, by_key_id=True),
                smime.Recipient(dave_ec384.cert)], smime.Cipher.AES256_GCM)
    yield "rsa.signed+aes256-cbc", smime.encrypt(
        smime.sign(plain, signer, signing_time=when), [smime.Recipient(bob.cert)])
    packed = compressed(plain)
    yield "zlib", packed
    yield "rsa.zlib+aes256-cbc", smime.encrypt(packed, [smime.Recipient(bob.cert)])


def compressed(data: bytes) -> bytes:
    """RFC 3274 compressed-data, as some clients put between the other layers."""
    parsed = mime.Entity.parse(data)
    info = cms.ContentInfo({"content_type": "compressed_data", "content": cms.CompressedData({
        "version": "v0",
        "compression_algorithm": {"algorithm": "zlib"},
        "encap_content_info": {"content_type": "data",
                               "content": zlib.compress(parsed.content_entity())},
    })})
    return mime.build_message(
        parsed.outer_headers(),
        'application/pkcs7-mime; smime-type=compressed-data; name="smime.p7z"',
        mime.b64encode_lines(info.dump()), [("Content-Transfer-Encoding", "base64")])


class Shelf(dict):
    """Seeds or trees by name, with a repr short enough for Hypothesis' reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} by name>"


@pytest.fixture(scope="module")
def seeds(alice, bob, carol_ec, dave_ec384, nss, when) -> Shelf:
    found = dict(our_messages(alice, bob, carol_ec, dave_ec384, when))
    assert set(found) == set(OUR_SEEDS)
    found.update((name, (nss / name).read_bytes()) for name in NSS_SEEDS)
    return Shelf((name, make_seed(name, data)) for name, data in found.items())


# --- calling the engine -----------------------------------------------------------------


def survive(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the engine: an SmimeError is an answer and is returned; anything else is a bug
    and propagates."""
    try:
        return call(*args, **kwargs)
    except smime.SmimeError as exc:
        return exc


class Distinct:
    """The failures of an exhaustive loop, one per kind and place, all raised at the end: one
    bug must not hide the next behind it."""

    def __init__(self) -> None:
        self.found: dict[tuple[type, str], Exception] = {}

    @contextmanager
    def about(self, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in frames if f"{os.sep}smime{os.sep}" in f.filename] or frames
            key = (type(exc), f"{ours[-1].filename}:{ours[-1].lineno}")
            if key not in self.found:
                exc.add_note(what)  # names the input in the report
                self.found[key] = exc

    def check(self) -> None:
        if self.found:
            raise ExceptionGroup(f"{len(self.found)} distinct failure(s)",
                                 list(self.found.values()))


def check_verdict(verdict: smime.Verdict) -> None:
    assert isinstance(verdict.status, smime.Status)
    assert isinstance(verdict.content, bytes), f"content is {type(verdict.content).__name__}"
    assert isinstance(verdict.reason, str)


def check_decrypted(decrypted: smime.Decrypted) -> None:
    assert isinstance(decrypted.content, bytes)
    assert isinstance(decrypted.cipher, str)  # read lazily from the structure
    assert isinstance(decrypted.key_transport, str)


def check_unwrapped(unwrapped: object) -> None:
    if isinstance(unwrapped, smime.Unwrapped):
        assert isinstance(unwrapped.message, bytes)
        for layer in unwrapped.layers:
            if isinstance(layer, smime.SignatureLayer):
                check_verdict(layer.verdict)
            elif isinstance(layer, smime.EncryptionLayer) and layer.decrypted is not None:
                check_decrypted(layer.decrypted)


def feed_message(t: Target, data: bytes) -> dict[str, Any]:
    """Every message-level entry point; returns what each answered."""
    unwrapped = survive(smime.unwrap, data, credentials=t.keys, anchors=t.anchors, at=t.at)
    check_unwrapped(unwrapped)
    opened = survive(smime.decrypt, data, t.keys)
    if not isinstance(opened, smime.SmimeError):
        plain, details = opened
        assert isinstance(plain, bytes)
        check_decrypted(details)
    verdict = survive(smime.verify, data, t.anchors, at=t.at)
    if isinstance(verdict, smime.Verdict):
        check_verdict(verdict)
    return {"verify": verdict, "decrypt": opened, "unwrap": unwrapped}


def feed_der(t: Target, der: bytes, content: bytes | None = None) -> dict[str, Any]:
    """Every DER-level entry point (opaque, and detached when ``content`` is given)."""
    answers = {
        "verify_signed_data": survive(smime.verify_signed_data, der, None, t.anchors, at=t.at)}
    if content is not None:
        answers["verify_signed_data/detached"] = survive(
            smime.verify_signed_data, der, content, t.anchors, at=t.at)
    # Without trust anchors, path building tries every certificate the message carries.
    answers["verify_signed_data/untrusted"] = survive(
        smime.verify_signed_data, der, content, (), at=t.at)
    for verdict in answers.values():
        if isinstance(verdict, smime.Verdict):
            check_verdict(verdict)
    decrypted = survive(smime.decrypt_enveloped, der, t.keys)
    if isinstance(decrypted, smime.Decrypted):
        check_decrypted(decrypted)
    answers["decrypt_enveloped"] = decrypted
    return answers


def feed_edited(t: Target, seed: Seed, der: bytes) -> None:
    """For the exhaustive loops, a little cheaper than both feeds: the DER entry points, and
    ``unwrap`` (which verifies and decrypts) on the message around it."""
    feed_der(t, der, seed.content)
    check_unwrapped(survive(smime.unwrap, seed.wrap(der), credentials=t.keys,
                            anchors=t.anchors, at=t.at))


def is_valid(answer: object) -> bool:
    return isinstance(answer, smime.Verdict) and answer.status is smime.Status.VALID


# --- a little BER, for building and splicing structures --------------------------------


def tlv(tag: int, body: bytes) -> bytes:
    """One DER element with a definite length."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()


SIGNED_DATA = "1.2.840.113549.1.7.2"
ENVELOPED_DATA = "1.2.840.113549.1.7.3"
AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
COMPRESSED_DATA = "1.2.840.113549.1.9.16.1.9"
CMS_TYPES = ("1.2.840.113549.1.7.1", SIGNED_DATA, ENVELOPED_DATA, "1.2.840.113549.1.7.4",
             "1.2.840.113549.1.7.5", "1.2.840.113549.1.7.6", "1.2.840.113549.1.9.16.1.2",
             COMPRESSED_DATA, AUTH_ENVELOPED_DATA, "1.2.3.4")


@dataclass(frozen=True, repr=False)
class Node:
    """A BER element: constructed ones keep their children, primitive ones their bytes."""

    tag: bytes
    raw: bytes  # the whole element as it came
    children: tuple[Node, ...] | None
    indefinite: bool = False  # BER indefinite length, as NSS writes (and kept so)

    def __repr__(self) -> str:
        return f"<element {self.raw[:24].hex()}...>"

    def encode(self) -> bytes:
        if self.children is None:
            return self.raw
        body = b"".join(child.encode() for child in self.children)
        if self.indefinite:
            return self.tag + b"\x80" + body + b"\0\0"
        if len(body) < 0x80:
            return self.tag + bytes([len(body)]) + body
        size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
        return self.tag + bytes([0x80 | len(size)]) + size + body


def parse_ber(data: bytes, pos: int = 0, depth: int = 0) -> tuple[Node, int]:
    """The element at ``pos`` (our seeds only: well-formed BER) and where it ends."""
    tag_end = pos + 1
    if data[pos] & 0x1F == 0x1F:
        while data[tag_end] & 0x80:
            tag_end += 1
        tag_end += 1
    tag = data[pos:tag_end]
    first = data[tag_end]
    start = tag_end + 1
    constructed = bool(data[pos] & 0x20) and depth < 12
    if first == 0x80:  # indefinite length: children up to end-of-contents
        children, cursor = [], start
        while data[cursor:cursor + 2] != b"\0\0":
            child, cursor = parse_ber(data, cursor, depth + 1)
            children.append(child)
        end = cursor + 2
        return Node(tag, data[pos:end], tuple(children), indefinite=True), end
    length = first
    if first & 0x80:
        length = int.from_bytes(data[start:start + (first & 0x7F)], "big")
        start += first & 0x7F
    end = start + length
    if not constructed:
        return Node(tag, data[pos:end], None), end
    children, cursor = [], start
    while cursor < end:
        child, cursor = parse_ber(data, cursor, depth + 1)
        children.append(child)
    return Node(tag, data[pos:end], tuple(children)), end


def paths(node: Node, limit: int, here: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    yield here
    if node.children is not None and len(here) < limit:
        for index, child in enumerate(node.children):
            yield from paths(child, limit, (*here, index))


def get(node: Node, path: Sequence[int]) -> Node:
    for index in path:
        assert node.children is not None
        node = node.children[index]
    return node


def replace(node: Node, path: Sequence[int], new: Sequence[Node]) -> Node:
    """``node`` with the element at ``path`` replaced by ``new`` (none, one or several)."""
    if not path:
        (only,) = new
        return only
    assert node.children is not None
    index, rest = path[0], path[1:]
    kids = list(node.children)
    if rest:
        kids[index] = replace(kids[index], rest, new)
    else:
        kids[index:index + 1] = new
    return Node(node.tag, node.raw, tuple(kids), node.indefinite)


def leaf(raw: bytes) -> Node:
    return Node(raw[:1], raw, None)


SPLICE_DEPTH = 12
# Small elements worth planting anywhere: algorithm and content-type OIDs, odd numbers.
PLANTS = tuple(leaf(raw) for raw in (
    *(oid(o) for o in CMS_TYPES),
    oid("2.16.840.1.101.3.4.2.1"), oid("1.2.840.113549.1.1.10"), oid("1.2.840.10045.4.3.3"),
    oid("2.16.840.1.101.3.4.1.6"), oid("1.2.840.113549.3.7"), oid("1.3.132.1.11.1"),
    oid("1.2.840.113549.1.1.7"), oid("1.2.840.113549.1.9.16.3.6"), oid("1.2.840.113549.3.2"),
    b"\x02\x01\x00", b"\x02\x01\xff", b"\x02\x09\x7f" + b"\xff" * 8, b"\x02\x00",
    b"\x04\x00", b"\x05\x00", b"\x01\x01\xff", b"\x30\x00", b"\x31\x00", b"\xa0\x00",
    b"\x17\x0d991231235959Z", b"\x18\x0f99991231235959Z", b"\x17\x05junk!",
    b"\x18\x0e20260101000000", b"\x03\x01\x07", b"\x0c\x02\xc3\x28",
))


@st.composite
def splices(draw: st.DrawFn, trees: dict[str, Node], names: Sequence[str]) -> tuple[str, bytes]:
    """A seed's DER with one element replaced (by noise, a known small element, or an
    element or whole structure of another seed), dropped or duplicated."""
    name = draw(st.sampled_from(names))
    tree = trees[name]
    candidates = list(paths(tree, SPLICE_DEPTH))
    if draw(st.booleans()):  # any element: mostly inside certificates
        path = draw(st.sampled_from(candidates))
    else:  # a depth first: the CMS structure's own few elements get their share
        depth = draw(st.integers(0, 7))
        path = draw(st.sampled_from([p for p in candidates if len(p) == depth] or candidates))
    old = get(tree, path)
    how = draw(st.sampled_from(("noise", "plant", "donor", "whole", "drop", "twice", "cut")))
    if not path and how in ("drop", "twice"):
        how = "noise"
    if how == "cut":  # the element ends early; everything around it stays consistent
        raw = old.encode()
        new = [leaf(raw[:draw(st.integers(1, max(len(raw) - 1, 1)))])]
    elif how == "noise":
        new = [leaf(draw(st.binary(min_size=1, max_size=64)))]
    elif how == "plant":
        new = [draw(st.sampled_from(PLANTS))]
    elif how == "donor":
        donor = trees[draw(st.sampled_from(sorted(trees)))]
        new = [get(donor, draw(st.sampled_from(list(paths(donor, SPLICE_DEPTH)))))]
    elif how == "whole":
        new = [trees[draw(st.sampled_from(sorted(trees)))]]
    elif how == "drop":
        new = []
    else:
        new = [old, old]
    return name, replace(tree, path, new).encode()


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with 1-4 random byte edits: bit flips, overwrites, insertions, deletions."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(("flip", "set", "insert", "delete")))
        position = draw(st.integers(0, max(len(out) - 1, 0)))
        if what == "insert" or not out:
            out[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif what == "delete":
            del out[position:position + draw(st.integers(1, 8))]
        elif what == "flip":
            out[position] ^= 1 << draw(st.integers(0, 7))
        else:
            out[position] = draw(st.integers(0, 255))
    return bytes(out)


def cut_points(length: int) -> list[int]:
    stride = max(1, length // CUTS)
    return sorted({*range(min(CUT_HEAD, length)), *range(0, length, stride),
                   *range(max(0, length - CUT_TAIL), length)})


# --- the seeds themselves ----------------------------------------------------------------


@pytest.mark.parametrize("name", VALID_SIGNED)
def test_the_signed_seeds_are_valid_as_they_are(seeds, target, name):
    """Otherwise "tampering never verifies" below would prove nothing."""
    seed = seeds[name]
    verdict = smime.verify(seed.message, target.anchors, at=target.at)
    assert verdict.valid, verdict.reason
    assert smime.verify(seed.wrap(seed.der), target.anchors, at=target.at).valid


@pytest.mark.parametrize("name", OUR_ENCRYPTED)
def test_the_encrypted_seeds_decrypt_as_they_are(seeds, target, name):
    seed = seeds[name]
    plain, _ = smime.decrypt(seed.message, target.keys)
    assert (b"smime-type=compressed-data" if "zlib" in name
            else b"the numbers are attached") in plain
    assert smime.decrypt(seed.wrap(seed.der), target.keys)[0] == plain


@pytest.mark.parametrize("name", ["zlib", "rsa.zlib+aes256-cbc"])
def test_the_compressed_seeds_unwrap_as_they_are(seeds, target, name):
    result = smime.unwrap(seeds[name].message, credentials=target.keys, at=target.at)
    assert isinstance(result.layers[-1], smime.CompressionLayer)
    assert b"the numbers are attached" in result.message


@pytest.mark.parametrize("name", ALL_SEEDS)
def test_the_trees_encode_back_to_the_seeds(seeds, trees, name):
    """The splicing below edits a faithful copy: unedited, it gives the very bytes back."""
    assert trees[name].encode() == seeds[name].der


# --- random bytes ------------------------------------------------------------------------


@settings(FUZZ, max_examples=250)
@given(data=st.binary(max_size=3000))
def test_random_bytes_as_a_message(target, data):
    feed_message(target, data)


@settings(FUZZ, max_examples=250)
@given(der=st.binary(max_size=3000))
def test_random_bytes_as_der(target, der):
    feed_der(target, der, content=b"Content-Type: text/plain\r\n\r\nhello\r\n")


@settings(FUZZ, max_examples=300)
@given(kind=st.sampled_from(CMS_TYPES), indefinite=st.booleans(),
       body=st.binary(max_size=2000))
def test_random_bytes_behind_a_cms_header(target, kind, indefinite, body):
    """Random content behind a well-formed ContentInfo header reaches the inner parsers."""
    if indefinite:
        der = b"\x30\x80" + oid(kind) + b"\xa0\x80" + body + b"\0\0\0\0"
    else:
        der = tlv(0x30, oid(kind) + tlv(0xA0, body))
    feed_der(target, der, content=b"hello")
    wrapped = (b"From: alice@example.com\r\nContent-Type: application/pkcs7-mime; "
               b"smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + mime.b64encode_lines(der))
    feed_message(target, wrapped)


# --- truncation ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SEEDS)
def test_every_truncated_message(seeds, target, name):
    data = seeds[name].message
    failures = Distinct()
    for cut in cut_points(len(data)):
        with failures.about(f"{name} cut to {cut} of {len(data)} bytes: {data[:cut][-80:]!r}"):
            feed_message(target, data[:cut])
    failures.check()


@pytest.mark.parametrize("name", ALL_SEEDS)
def test_every_truncated_der(seeds, target, name):
    seed = seeds[name]
    der = seed.der
    failures = Distinct()
    for cut in cut_points(len(der)):
        with failures.about(f"{name}: DER cut to {cut} of {len(der)} bytes"):
            feed_edited(target, seed, der[:cut])
    failures.check()


# --- mutation -----------------------------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(name=st.sampled_from(ALL_SEEDS), data=st.data())
def test_mutated_der_rewrapped(seeds, target, name, data):
    seed = seeds[name]
    der = data.draw(mutations(seed.der), label="der")
    feed_der(target, der, seed.content)
    feed_message(target, seed.wrap(der))


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(ALL_SEEDS), data=st.data())
def test_mutated_message(seeds, target, name, data):
    """Edits anywhere in the MIME text: headers, boundaries, base64."""
    feed_message(target, data.draw(mutations(seeds[name].message), label="message"))


@pytest.fixture(scope="module")
def trees(seeds) -> Shelf:
    return Shelf((name, parse_ber(seed.der)[0]) for name, seed in seeds.items())


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_spliced_der_rewrapped(seeds, target, trees, data):
    name, der = data.draw(splices(trees, sorted(trees)), label="splice")
    seed = seeds[name]
    feed_der(target, der, seed.content)
    feed_message(target, seed.wrap(der))


def leaf_paths(node: Node, here: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    if node.children is None:
        yield here
    for index, child in enumerate(node.children or ()):
        yield from leaf_paths(child, (*here, index))


# For each kind of primitive element, values that are well-formed but odd in its place.
ODD_LEAVES: dict[bytes, tuple[Node, ...]] = {
    b"\x06": (leaf(oid("1.2.3.4")),),  # an object identifier nobody knows
    b"\x02": tuple(leaf(raw) for raw in (b"\x02\x01\x01", b"\x02\x01\x03", b"\x02\x01\xff",
                                          b"\x02\x09\x01" + b"\x00" * 8)),
    b"\x17": (leaf(b"\x17\x0d000229000000Z"), leaf(b"\x17\x0b9912312359Z")),
    b"\x18": (leaf(b"\x18\x0f00000101000000Z"),),
    b"\x04": (leaf(b"\x04\x00"),),
    b"\x03": (leaf(b"\x03\x01\x00"),),
    b"\x0c": (leaf(b"\x0c\x02\xc3\x28"),),  # not UTF-8
    b"\x13": (leaf(b"\x13\x03a*\xff"),),  # not printable
    b"\x16": (leaf(b"\x16\x04\xff@\x00."),),  # not IA5, not an address
}


# The corpus' structurally distinct messages (the others differ in digest or content only).
NSS_DISTINCT = ("alice.dsig.SHA256.multipart.eml", "alice.sig.SHA1.opaque.eml", "alice.env.eml",
                "alice.sig.SHA256.opaque.env.eml", "alice.env.dsig.SHA256.multipart.eml")


@pytest.mark.parametrize("name", [*OUR_SEEDS, *NSS_DISTINCT])
def test_every_primitive_made_odd(seeds, target, trees, name):
    """Each primitive element in turn, in every structure and certificate: object identifiers
    (content types, algorithms, key types, curves, attribute types) made unknown, integers
    (versions, serials) made 1, 3, -1 or huge, times made odd, strings emptied or garbled."""
    seed, tree = seeds[name], trees[name]
    failures = Distinct()
    for path in leaf_paths(tree):
        old = get(tree, path)
        for odd in ODD_LEAVES.get(old.tag, ()):
            der = replace(tree, path, [odd]).encode()
            with failures.about(f"{name}: {old.raw[:16].hex()} at {path} made {odd.raw.hex()}"):
                feed_edited(target, seed, der)
    failures.check()


EDITED = ("ec384.opaque", "rsa-oaep+ec384.aes256-gcm", "alice.dsig.SHA256.multipart.eml",
          "alice.env.eml")


@pytest.mark.parametrize("name", EDITED)
def test_every_element_dropped_or_doubled(seeds, target, trees, name):
    """Each element in turn, down into the certificates, left out or given twice (a
    duplicated extension, attribute, recipient, signer, certificate...)."""
    seed, tree = seeds[name], trees[name]
    failures = Distinct()
    for path in paths(tree, SPLICE_DEPTH):
        if not path:
            continue
        old = get(tree, path)
        for edit, new in (("dropped", []), ("doubled", [old, old])):
            der = replace(tree, path, new).encode()
            with failures.about(f"{name}: {old.raw[:16].hex()}... at {path} {edit}"):
                feed_edited(target, seed, der)
    failures.check()


# --- tampering: the meaning ------------------------------------------------------------------


@st.composite
def xor_at(draw: st.DrawFn, start: int, end: int) -> tuple[int, int]:
    """A position in [start, end) and a non-zero mask: the byte there surely changes."""
    return draw(st.integers(start, end - 1)), draw(st.integers(1, 255))


def flip(data: bytes, position: int, mask: int) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


def region(der: bytes, element: core.Asn1Value) -> tuple[int, int]:
    """Where the contents of a parsed element lie in ``der``."""
    contents = element.contents
    start = der.index(contents)
    return start, start + len(contents)


def judged(t: Target, seed: Seed, der: bytes) -> list[Any]:
    """The answers on a signature's DER: alone (with the detached content) and re-wrapped."""
    return [survive(smime.verify_signed_data, der, seed.content, t.anchors, at=t.at),
            survive(smime.verify, seed.wrap(der), t.anchors, at=t.at)]


@pytest.fixture(scope="module")
def originals(seeds, target) -> Shelf:
    """What each valid signature covers, and what each GCM message decrypts to."""
    found = Shelf((name, smime.verify(seeds[name].message, target.anchors, at=target.at).content)
                  for name in VALID_SIGNED)
    found.update((name, smime.decrypt_enveloped(seeds[name].der, target.keys).content)
                 for name in OUR_GCM)
    return found


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(VALID_SIGNED), data=st.data())
def test_tampered_signed_content_never_verifies(seeds, target, name, data):
    seed = seeds[name]
    if seed.content is not None:  # clear-signed: change the signed part of the message
        start = seed.message.index(seed.content)
        position, mask = data.draw(xor_at(start, start + len(seed.content)))
        answer = survive(smime.verify, flip(seed.message, position, mask), target.anchors,
                         at=target.at)
        assert not is_valid(answer), f"byte {position - start} of the signed part"
        return
    signed = cms.ContentInfo.load(seed.der)["content"]
    position, mask = data.draw(xor_at(*region(seed.der, signed["encap_content_info"]["content"])))
    for answer in judged(target, seed, flip(seed.der, position, mask)):
        assert not is_valid(answer), f"DER byte {position} of the embedded content"


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(VALID_SIGNED), data=st.data())
def test_tampered_signature_value_never_verifies(seeds, target, name, data):
    seed = seeds[name]
    (signer_info,) = cms.ContentInfo.load(seed.der)["content"]["signer_infos"]
    position, mask = data.draw(xor_at(*region(seed.der, signer_info["signature"])))
    for answer in judged(target, seed, flip(seed.der, position, mask)):
        assert not is_valid(answer), f"DER byte {position} of the signature value"


@settings(FUZZ, max_examples=200)
@given(name=st.sampled_from(VALID_SIGNED), data=st.data())
def test_mutated_signature_verifies_only_the_original_content(seeds, target, originals, name,
                                                              data):
    """Edits anywhere in the DER: VALID is allowed only for the very content that was signed
    (the edit hit a byte that does not matter, like an unused digest algorithm)."""
    seed = seeds[name]
    for answer in judged(target, seed, data.draw(mutations(seed.der), label="der")):
        if is_valid(answer):
            assert answer.content == originals[name]


def gcm_regions(der: bytes) -> list[tuple[int, int]]:
    """What AES-GCM must protect: ciphertext, tag, nonce, and (one recipient) its key."""
    data = cms.ContentInfo.load(der)["content"]
    encrypted = data["auth_encrypted_content_info"]
    params = encrypted["content_encryption_algorithm"]["parameters"]
    nonce = params.parse(GcmParams)["aes_nonce"]
    found = [region(der, encrypted["encrypted_content"]), region(der, data["mac"]),
             region(der, nonce)]
    recipients = list(data["recipient_infos"])
    if len(recipients) == 1:
        (info,) = recipients
        if info.name == "ktri":
            found.append(region(der, info.chosen["encrypted_key"]))
        else:
            (key,) = info.chosen["recipient_encrypted_keys"]
            found.append(region(der, key["encrypted_key"]))
            # The point, not the BIT STRING's unused-bits octet: asn1crypto drops padding
            # bits, so a nonzero count over zero bits still names the same point.
            start, end = region(der, info.chosen["originator"].chosen["public_key"])
            found.append((start + 1, end))
    return found


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(OUR_GCM), data=st.data())
def test_tampered_gcm_never_decrypts(seeds, target, name, data):
    seed = seeds[name]
    start, end = data.draw(st.sampled_from(gcm_regions(seed.der)), label="field")
    position, mask = data.draw(xor_at(start, end))
    der = flip(seed.der, position, mask)
    expected = (smime.DecryptionFailed, smime.MalformedMessage)
    with pytest.raises(expected):
        smime.decrypt_enveloped(der, target.keys)
    with pytest.raises(expected):
        smime.decrypt(seed.wrap(der), target.keys)


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(OUR_GCM), data=st.data())
def test_mutated_gcm_yields_the_original_plaintext_or_nothing(seeds, target, originals, name,
                                                            data):
    seed = seeds[name]
    der = data.draw(mutations(seed.der), label="der")
    answer = survive(smime.decrypt_enveloped, der, target.keys)
    if isinstance(answer, smime.Decrypted):
        assert answer.content == originals[name]
    answer = survive(smime.decrypt, seed.wrap(der), target.keys)
    if not isinstance(answer, smime.SmimeError):
        assert answer[1].content == originals[name]


# --- MIME junk ------------------------------------------------------------------------------

HEAD = (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: junk\r\n"
        b"MIME-Version: 1.0\r\n")
SIGNED_TYPE = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
               b'micalg=sha-256; boundary="XX"\r\n')
OPAQUE_TYPE = (b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
               b"Content-Transfer-Encoding: base64\r\n")
ENVELOPED_TYPE = (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                  b"Content-Transfer-Encoding: base64\r\n")
PART = b"Content-Type: text/plain\r\n\r\nhello\r\n"
SIG_PART = (b"Content-Type: application/pkcs7-signature\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n")


def multipart(*parts: bytes, close: bool = True, boundary: bytes = b"XX") -> bytes:
    body = b"preamble\r\n" + b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


JUNK: dict[str, bytes] = {
    "empty": b"",
    "one CRLF": b"\r\n",
    "blank lines": b"\r\n\r\n\r\n",
    "only LF": b"\n" * 50,
    "only CR": b"\r" * 50,
    "NUL bytes": b"\0" * 100,
    "headers only": HEAD + SIGNED_TYPE,
    "headers only, pkcs7": HEAD + OPAQUE_TYPE,
    "no blank line": HEAD + OPAQUE_TYPE + b"MIAGCSqGSIb3DQEHAqCAMIACAQEx",
    "no colon": b"this is not a header\r\n\r\nbody",
    "colon only": b":\r\n:\r\n\r\n:",
    "continuation first": b" folded\r\n\tmore\r\n" + OPAQUE_TYPE + b"\r\nAAAA",
    "huge header line": HEAD + b"X-Long: " + b"a" * 200_000 + b"\r\n" + SIGNED_TYPE + b"\r\n"
                        + multipart(PART, SIG_PART),
    "huge content-type": HEAD + b"Content-Type: multipart/signed; boundary=XX"
                         + b"; x=y" * 20_000 + b"\r\n\r\n" + multipart(PART, SIG_PART),
    "huge boundary": HEAD + b"Content-Type: multipart/signed; boundary=" + b"B" * 100_000
                     + b"\r\n\r\n" + multipart(PART, SIG_PART, boundary=b"B" * 100_000),
    "8-bit header": HEAD + b"From: \xff\xfe\xc3\x28 <\x80@\x81>\r\n" + SIGNED_TYPE + b"\r\n"
                    + multipart(PART, SIG_PART),
    "empty body, signed": HEAD + SIGNED_TYPE + b"\r\n",
    "empty body, opaque": HEAD + OPAQUE_TYPE + b"\r\n",
    "empty body, enveloped": HEAD + ENVELOPED_TYPE + b"\r\n",
    "missing boundary": HEAD + b"Content-Type: multipart/signed; protocol=x\r\n\r\n"
                        + multipart(PART, SIG_PART),
    "empty boundary": HEAD + b'Content-Type: multipart/signed; boundary=""\r\n\r\n'
                      + multipart(PART, SIG_PART),
    "boundary not in body": HEAD + SIGNED_TYPE + b"\r\n" + multipart(PART, SIG_PART,
                                                                     boundary=b"YY"),
    "boundary never closed": HEAD + SIGNED_TYPE + b"\r\n" + multipart(PART, SIG_PART,
                                                                      close=False),
    "boundary line unterminated": HEAD + SIGNED_TYPE + b"\r\n--XX",
    "closing boundary only": HEAD + SIGNED_TYPE + b"\r\n--XX--\r\n",
    "zero parts": HEAD + SIGNED_TYPE + b"\r\n" + multipart(),
    "one part": HEAD + SIGNED_TYPE + b"\r\n" + multipart(PART),
    "three parts": HEAD + SIGNED_TYPE + b"\r\n" + multipart(PART, SIG_PART, SIG_PART),
    "two empty parts": HEAD + SIGNED_TYPE + b"\r\n" + multipart(b"", b""),
    "signature part without blank line": HEAD + SIGNED_TYPE + b"\r\n"
        + multipart(PART, b"Content-Type: application/pkcs7-signature"),
    "base64 garbage": HEAD + OPAQUE_TYPE + b"\r\n!!!!@@@@####$$$$\r\n",
    "base64 bad padding": HEAD + OPAQUE_TYPE + b"\r\nMIA=G\r\n=\r\n",
    "base64 one char": HEAD + OPAQUE_TYPE + b"\r\nM\r\n",
    "base64 only padding": HEAD + OPAQUE_TYPE + b"\r\n====\r\n",
    "base64 non-ascii": HEAD + OPAQUE_TYPE + b"\r\nMIA\xff\xfeGCS\r\n",
    "base64 garbage signature": HEAD + SIGNED_TYPE + b"\r\n" + multipart(
        PART, b"Content-Type: application/pkcs7-signature\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\n%%%%\xff\r\n"),
    "quoted-printable garbage": HEAD + b"Content-Type: application/pkcs7-mime\r\n"
                                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=",
    "unknown transfer encoding": HEAD + b"Content-Type: application/pkcs7-mime\r\n"
                                 b"Content-Transfer-Encoding: x-uuencode\r\n\r\n0\x80",
    "binary body": HEAD + b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data"
                   b"\r\nContent-Transfer-Encoding: binary\r\n\r\n\x30\x80\x06",
    "compressed-data type, junk body": HEAD + b"Content-Type: application/pkcs7-mime; "
                                       b"smime-type=compressed-data\r\n\r\n\x30\x03\x02\x01",
    "no content type": HEAD + b"\r\n" + multipart(PART, SIG_PART),
    "content type without subtype": HEAD + b"Content-Type: multipart\r\n\r\nx",
    "content type only parameters": HEAD + b"Content-Type: ;;;;boundary=XX;;\r\n\r\nx",
    "content type equals only": HEAD + b"Content-Type: =\r\n\r\nx",
    "unterminated quote": HEAD + b'Content-Type: multipart/signed; boundary="XX\r\n\r\n'
                          + multipart(PART, SIG_PART),
    "quote in boundary": HEAD + b'Content-Type: multipart/signed; boundary="X\\"X"\r\n\r\n'
                         + multipart(PART, SIG_PART, boundary=b'X"X'),
    "non-ascii boundary": HEAD + "Content-Type: multipart/signed; boundary=\"b\u00f8\"\r\n\r\n"
                          .encode() + multipart(PART, SIG_PART, boundary="b\u00f8".encode()),
    "rfc2231 boundary": HEAD + b"Content-Type: multipart/signed; boundary*=utf-8''%E2%82\r\n"
                        b"\r\n" + multipart(PART, SIG_PART),
    "rfc2231 unknown charset": HEAD + b"Content-Type: multipart/signed; "
                               b"boundary*=x-nonsense'en'XX\r\n\r\n" + multipart(PART, SIG_PART),
    "rfc2231 continuations": HEAD + b"Content-Type: multipart/signed; boundary*0*=''X; "
                             b"boundary*1=X; boundary*5=Y; boundary*x=Z\r\n\r\n"
                             + multipart(PART, SIG_PART),
    "rfc2231 plain and continued": HEAD + b"Content-Type: multipart/signed; boundary*=x; "
                                   b"boundary*0*=y\r\n\r\n" + multipart(PART, SIG_PART),
    "rfc2231 broken": HEAD + b"Content-Type: application/pkcs7-mime; smime-type*='''%%; "
                      b"name*0*=%ff\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA",
    "encoded words": HEAD + b"Content-Type: =?utf-8?b?bXVsdGlwYXJ0L3NpZ25lZA==?=; "
                     b"boundary==?x?q?XX?=\r\n\r\n" + multipart(PART, SIG_PART),
    "empty smime-type": HEAD + b"Content-Type: application/pkcs7-mime; smime-type=; name=\r\n"
                        b"Content-Transfer-Encoding: base64\r\n\r\nAAAA",
    "p7m name without smime-type": HEAD + b"Content-Type: application/x-pkcs7-mime; "
                                   b"name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n"
                                   b"\r\nMIAGCSqGSIb3DQEHA6CAMIA=",
    "two content types": HEAD + OPAQUE_TYPE + SIGNED_TYPE + b"\r\n" + multipart(PART, SIG_PART),
    "folded content type": HEAD + b"Content-Type: multipart/signed;\r\n boundary=\r\n \"XX\"\r\n"
                           b"\r\n" + multipart(PART, SIG_PART),
    "bare LF and CR": (HEAD + SIGNED_TYPE).replace(b"\r\n", b"\n") + b"\r"
                      + multipart(PART, SIG_PART).replace(b"\r\n", b"\r"),
    "weird From": b"From: \"\\\" <<<@@>>> ,,, (((\r\n" + SIGNED_TYPE + b"\r\n"
                  + multipart(PART, SIG_PART),
    "nested multipart/signed": HEAD + SIGNED_TYPE + b"\r\n" + multipart(
        b'Content-Type: multipart/signed; boundary="XX"\r\n\r\n' + multipart(PART, SIG_PART),
        SIG_PART),
}


@pytest.mark.parametrize("name", JUNK)
def test_mime_junk(target, name):
    feed_message(target, JUNK[name])


def nested_signed_data() -> bytes:
    """A SignedData whose encapsulated content is itself a SignedData (not data)."""
    data = tlv(0x30, oid("1.2.840.113549.1.7.1") + tlv(0xA0, tlv(0x04, b"hi")))
    inner = tlv(0x30, b"\x02\x01\x01" + b"\x31\x00" + data + b"\x31\x00")
    encap = tlv(0x30, oid(SIGNED_DATA) + tlv(0xA0, inner))
    outer = tlv(0x30, b"\x02\x01\x01" + b"\x31\x00" + encap + b"\x31\x00")
    return tlv(0x30, oid(SIGNED_DATA) + tlv(0xA0, outer))


DER_JUNK: dict[str, bytes] = {
    "empty": b"",
    "one tag": b"\x30",
    "indefinite, never ended": b"\x30\x80",
    "end-of-contents only": b"\0\0",
    "length beyond the data": b"\x30\x7f\x06",
    "huge long-form length": b"\x30\x84\xff\xff\xff\xff\x06\x09",
    "absurd long-form length": b"\x30\x8f" + b"\xff" * 15,
    "length of length zero": b"\x30\x80\x00\x00\x00",
    "high tag number": b"\x1f\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00",
    "deep nesting, indefinite": b"\x30\x80" * 5000 + b"\0\0" * 5000,
    "deep nesting, CMS": b"\x30\x80" + oid(SIGNED_DATA) + b"\xa0\x80" + b"\x30\x80" * 5000
                         + b"\0\0" * 5002,
    "deep constructed octet string": b"\x30\x80" + oid(SIGNED_DATA) + b"\xa0\x80\x30\x80"
                                     b"\x02\x01\x01\x31\x00\x30\x80" + oid(CMS_TYPES[0])
                                     + b"\xa0\x80" + b"\x24\x80" * 3000 + b"\0\0" * 3004,
    "content-info, no content": tlv(0x30, oid(SIGNED_DATA)),
    "content-info, empty content": tlv(0x30, oid(SIGNED_DATA) + b"\xa0\x00"),
    "enveloped, no content": tlv(0x30, oid(ENVELOPED_DATA) + b"\xa0\x02\x30\x00"),
    "auth-enveloped, no content": tlv(0x30, oid(AUTH_ENVELOPED_DATA) + b"\xa0\x02\x30\x00"),
    "unknown content type": tlv(0x30, oid("1.2.3.4.5") + b"\xa0\x02\x05\x00"),
    "bad oid": b"\x30\x07\x06\x05\xff\xff\xff\xff\xff",
    "nested signed-data": nested_signed_data(),
    "compressed, no content": tlv(0x30, oid(COMPRESSED_DATA)),
    "compressed, not zlib": tlv(0x30, oid(COMPRESSED_DATA) + tlv(0xA0, tlv(
        0x30, b"\x02\x01\x00" + tlv(0x30, oid("1.2.3.4")) + tlv(
            0x30, oid(CMS_TYPES[0]) + tlv(0xA0, tlv(0x04, b"x")))))),
    "compressed, corrupt zlib": tlv(0x30, oid(COMPRESSED_DATA) + tlv(0xA0, tlv(
        0x30, b"\x02\x01\x00" + tlv(0x30, oid("1.2.840.113549.1.9.16.3.8")) + tlv(
            0x30, oid(CMS_TYPES[0]) + tlv(0xA0, tlv(0x04, b"not zlib")))))),
}


@pytest.mark.parametrize("name", DER_JUNK)
def test_der_junk(target, name):
    der = DER_JUNK[name]
    for content_type in (OPAQUE_TYPE, ENVELOPED_TYPE):
        feed_message(target, HEAD + content_type + b"\r\n" + mime.b64encode_lines(der))
    feed_der(target, der, content=b"hello")


# --- generated MIME ---------------------------------------------------------------------------

MIME_TYPES = ("multipart/signed", "application/pkcs7-mime", "application/x-pkcs7-mime",
              "application/pkcs7-signature", "multipart/mixed", "text/plain", "", "/", "a/b/c")
PARAM_NAMES = ("boundary", "smime-type", "protocol", "micalg", "name", "boundary*",
               "boundary*0*", "boundary*1", "smime-type*", "charset", "")
PARAM_VALUES = st.one_of(
    st.sampled_from(("signed-data", "enveloped-data", "authEnveloped-data", "compressed-data",
                     "certs-only", "smime.p7m", "smime.p7s", "XX", '"XX"', '""', "''",
                     "utf-8''%ff", "us-ascii'en'XX", '"', "=?utf-8?q?x?=")),
    st.text(max_size=20),
)
ENCODINGS = (None, "base64", "quoted-printable", "7bit", "8bit", "binary", "x-junk", "BASE64")


@st.composite
def bodies(draw: st.DrawFn, seeds_der: Sequence[bytes]) -> bytes:
    kind = draw(st.sampled_from(("noise", "base64 noise", "base64 seed", "multipart")))
    if kind == "noise":
        return draw(st.binary(max_size=500))
    if kind == "base64 noise":
        return mime.b64encode_lines(draw(st.binary(max_size=500)))
    if kind == "base64 seed":
        return mime.b64encode_lines(draw(mutations(draw(st.sampled_from(seeds_der)))))
    parts = draw(st.lists(st.one_of(st.just(PART), st.just(SIG_PART), st.binary(max_size=80)),
                          max_size=4))
    return multipart(*parts, close=draw(st.booleans()))


@st.composite
def mime_messages(draw: st.DrawFn, seeds_der: Sequence[bytes]) -> bytes:
    params = draw(st.lists(st.tuples(st.sampled_from(PARAM_NAMES), PARAM_VALUES), max_size=4))
    content_type = "; ".join([draw(st.sampled_from(MIME_TYPES)),
                              *(f"{name}={value}" for name, value in params)])
    fields = [f"Content-Type: {content_type}"]
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding:
        fields.append(f"Content-Transfer-Encoding: {encoding}")
    if draw(st.booleans()):
        fields.append(f"From: {draw(st.text(max_size=40))}")
    head = "\r\n".join(fields).encode("utf-8", "surrogateescape")
    return head + draw(st.sampled_from((b"\r\n\r\n", b"\n\n", b"\r\n", b""))) + draw(
        bodies(seeds_der))


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_generated_mime(seeds, target, data):
    ders = [seeds[name].der for name in sorted(seeds)]
    feed_message(target, data.draw(mime_messages(ders), label="message"))

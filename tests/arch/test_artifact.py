import hashlib
import json

import pytest
from bamboo.arch import artifact as art
from bamboo.arch import preset
from bamboo.arch.isa import ISA_VERSION

CFG = preset("tiny")


def _blob(**kw):
    return art.write_artifact(
        {
            art.Section.PROGRAM: bytes(range(96)),
            art.Section.WEIGHTS: b"\x01\x02\x03",
            art.Section.METADATA: {"name": "m", "steps": []},
            art.Section.IOQUANT: {"inputs": [], "outputs": []},
            77: b"future section",
        },
        config_id=CFG.config_id,
        **kw,
    )


def test_round_trip():
    """The container alone (``validate=False``): these sections are not a model."""
    blob = _blob()
    a = art.read_artifact(blob, config_id=CFG.config_id, validate=False)
    assert a.program == bytes(range(96)) and a.weights == b"\x01\x02\x03"
    assert json.loads(a.sections[art.Section.METADATA]) == {"name": "m", "steps": []}
    assert json.loads(a.sections[art.Section.IOQUANT]) == {"inputs": [], "outputs": []}
    with pytest.raises(art.ArtifactError, match="without validation"):
        a.metadata  # noqa: B018
    with pytest.raises(art.ArtifactCorruptError, match="invalid artifact: metadata lacks"):
        art.read_artifact(blob)
    assert a.sections[77] == b"future section"  # unknown kinds are kept
    assert (a.isa_version, a.config_id, a.format_version) == (ISA_VERSION, CFG.config_id, 1)
    assert blob[:8] == art.MAGIC
    # Sections start aligned; the header's checksum covers the file with itself zeroed.
    zeroed = blob[:32] + bytes(32) + blob[64:]
    assert hashlib.sha256(zeroed).digest() == blob[32:64]


@pytest.mark.parametrize("cut", [0, 10, 63, 64, 200, -1])
def test_truncated_is_rejected(cut):
    blob = _blob()
    with pytest.raises(art.ArtifactTruncatedError, match="truncated"):
        art.read_artifact(blob[:cut] if cut >= 0 else blob[:-1])


def test_corrupted_byte_fails_the_checksum():
    blob = bytearray(_blob())
    blob[-5] ^= 0x40
    with pytest.raises(art.ArtifactCorruptError, match="checksum mismatch"):
        art.read_artifact(bytes(blob))


def test_bad_magic_and_trailing_bytes():
    with pytest.raises(art.ArtifactCorruptError, match="bad magic"):
        art.read_artifact(b"PK\x03\x04" + _blob()[4:])
    with pytest.raises(art.ArtifactCorruptError, match="not a Bamboo artifact"):
        art.read_artifact(b"hello")
    with pytest.raises(art.ArtifactCorruptError, match="trailing bytes"):
        art.read_artifact(_blob() + b"\0")


def test_mismatched_config_and_isa():
    blob = _blob()
    other = preset("ultra96").config_id
    with pytest.raises(
        art.ArtifactMismatchError,
        match=f"config_id {CFG.config_id:#010x} does not match .*{other:#010x}",
    ):
        art.read_artifact(blob, config_id=other)
    with pytest.raises(art.ArtifactMismatchError, match="compiled for ISA version 99"):
        art.read_artifact(_blob(isa_version=99))
    # A newer file format is named as such, before any checksum work.
    blob = bytearray(blob)
    blob[8] = 2
    with pytest.raises(art.ArtifactMismatchError, match="format version 2"):
        art.read_artifact(bytes(blob))


def test_errors_are_bamboo_errors():
    from bamboo.arch.errors import BambooError

    for cls in (art.ArtifactTruncatedError, art.ArtifactCorruptError, art.ArtifactMismatchError):
        assert issubclass(cls, art.ArtifactError) and issubclass(cls, BambooError)


def test_json_sections_are_canonical():
    a = art.read_artifact(_blob(), validate=False)
    raw = a.sections[art.Section.METADATA]
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()

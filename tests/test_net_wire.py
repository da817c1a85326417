"""The SCP's byte-level shortcuts give what pydicom and pynetdicom would, byte for byte."""

from __future__ import annotations

import random
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.filereader import _read_file_meta_info, read_preamble
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from gateway.net import dicom_header as wire
from gateway.net.pynetdicom_patches import store_response_command

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1"),
        ("1.2", "1.23", "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.4", "2.25." + "9" * 59, "1.2.840.10008.1.2.4.50"),
    ],
)
def test_file_meta_is_what_pynetdicom_writes(
    sop_class: str, sop_instance: str, syntax: str
) -> None:
    meta = create_file_meta(
        sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax=syntax
    )
    assert wire.file_meta(sop_class, sop_instance, syntax) == wire.PREAMBLE + encode_file_meta(meta)


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xA900, 0xC210, 0xB000])
def test_store_response_is_what_pynetdicom_encodes(status: int) -> None:
    rsp = C_STORE()
    rsp.MessageID = rsp.MessageIDBeingRespondedTo = 300
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.123"
    rsp.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (pdata,) = list(message.encode_msg(3, 0))
    assert pdata.presentation_data_value_list[0][1] == b"\x03" + store_response_command(rsp)


def test_header_walk_agrees_with_pydicom_on_the_samples_and_their_mutations() -> None:
    rng = random.Random(1)
    walked = 0
    for path in sorted(TESTDATA.rglob("*.dcm")):
        raw = path.read_bytes()
        stream = BytesIO(raw)
        try:
            read_preamble(stream, False)
            meta = _read_file_meta_info(stream)
        except Exception:
            continue
        syntax = str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))
        body = raw[stream.tell() :]
        variants = [body, *(body[: rng.randrange(len(body) + 1)] for _ in range(5))]
        for variant in variants:
            if wire.top_level_values(variant, syntax, wire._WANTED) is None:
                continue  # left to pydicom
            walked += 1
            try:
                expected = wire._by_pydicom(variant, syntax)
            except wire.HeaderUnreadable:
                continue
            assert wire.header_uids(variant, syntax) == expected, path.name
    assert walked > 40

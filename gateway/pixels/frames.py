"""Decode every frame of an image, make an OCR view of one, and write frames back.

The pixel stage must see and rewrite *every* frame (a cine loop repeats its burned-in header on
each frame), in the stored value space so that a rewrite is lossless for the pixels it does not
blank. Decoding goes through pydicom's pixel backends (numpy for native data, pylibjpeg for
JPEG, JPEG-LS, JPEG 2000 and RLE). Errors never carry patient data: they name the transfer
syntax and what failed, and chain the backend's exception for debugging.
"""

from __future__ import annotations

import logging

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    get_decoder,
    get_encoder,
    pack_bits,
)
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    RLELossless,
)

logger = logging.getLogger(__name__)

ENCODINGS: dict[str, UID] = {
    "uncompressed": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-ls": JPEGLSLossless,
}
"""`write_frames` encodings: all lossless, so redaction never adds compression artefacts."""

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
TABLE_SPAN = 1 << 16  # a monochrome frame whose values span less is windowed by a table

# Transfer syntaxes that are always lossy (JPEG DCT processes, ISO 10918-1).
LOSSY_ONLY = (JPEGBaseline8Bit, JPEGExtended12Bit)

# PS3.3 C.7.6.3 / C.7.9: the Palette Color Lookup Table module. Once the pixels are expanded to
# RGB these would describe a palette that no longer exists, so they are removed.
PALETTE_TAGS = (
    0x00281101,  # Red Palette Color Lookup Table Descriptor
    0x00281102,  # Green ... Descriptor
    0x00281103,  # Blue ... Descriptor
    0x00281104,  # Alpha ... Descriptor
    0x00281199,  # Palette Color Lookup Table UID
    0x00281201,  # Red Palette Color Lookup Table Data
    0x00281202,  # Green ... Data
    0x00281203,  # Blue ... Data
    0x00281204,  # Alpha ... Data
    0x00281221,  # Segmented Red Palette Color Lookup Table Data
    0x00281222,  # Segmented Green ... Data
    0x00281223,  # Segmented Blue ... Data
    0x00281224,  # Segmented Alpha ... Data
)

# Elements that only describe encapsulated (compressed) Pixel Data, PS3.5 A.4 / PS3.3 C.7.6.3.
ENCAPSULATION_TAGS = (0x7FE00001, 0x7FE00002)  # Extended Offset Table (+ Lengths)


class PixelDecodeError(Exception):
    """The pixel data cannot be decoded; the message names the reason, never patient data."""


class PixelEncodeError(Exception):
    """The frames cannot be written in the requested encoding (e.g. the encoder is missing)."""


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not tsyntax:
        # PS3.10 7.1: the transfer syntax lives in the File Meta; without it the byte order
        # and compression of Pixel Data are unknown, and guessing could mis-redact.
        raise PixelDecodeError("cannot decode pixel data: File Meta has no Transfer Syntax UID")
    return UID(str(tsyntax))


def decoder_for(ds: Dataset) -> Decoder:
    """pydicom's decoder for the transfer syntax of `ds`, or PixelDecodeError saying why
    there is none here."""
    tsyntax = _transfer_syntax(ds)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise PixelDecodeError(
            f"cannot decode pixel data: no decoder for transfer syntax {tsyntax}"
            + (f" ({tsyntax.name})" if tsyntax.name != str(tsyntax) else "")
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise PixelDecodeError(f"cannot decode pixel data in {tsyntax.name}: needs {missing}")
    return decoder


def decode_failed(ds: Dataset, exc: Exception) -> PixelDecodeError:
    """A backend's failure, by its type only: its message can quote element values."""
    return PixelDecodeError(
        f"cannot decode pixel data in {_transfer_syntax(ds).name} ({type(exc).__name__})"
    )


def decode_frames(ds: Dataset) -> np.ndarray:
    """Every frame of `ds`: (frames, rows, cols) for one sample, (frames, rows, cols, 3) colour.

    Values are stored values (PS3.3 C.7.6.3 Image Pixel: before Modality/VOI LUTs), with the
    bits outside Bits Stored (which may hold retired embedded overlays, PS3.5 8.1.2) masked
    off by pydicom. YBR (JPEG YBR_FULL_422, YBR_FULL, J2K YBR_RCT/ICT) is converted to RGB and
    PALETTE COLOR is expanded through its LUT to RGB (uint8 or uint16, per the LUT's bits), so
    that redaction paints in one colour space. The array is writeable, native-endian and C
    contiguous. (frame_files.py decodes the same way one frame at a time.)
    """
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise PixelDecodeError("cannot decode pixel data: Float Pixel Data is not supported")
        raise PixelDecodeError("cannot decode pixel data: no Pixel Data (7FE0,0010)")
    decoder = decoder_for(ds)
    try:
        arr, meta = decoder.as_array(ds, as_rgb=True)
    except Exception as exc:
        raise decode_failed(ds, exc) from exc
    n_frames = int(meta.get("number_of_frames", 1) or 1)
    return finish_frames(arr, meta, ds, n_frames)


def finish_frames(
    arr: np.ndarray, meta: dict[str, str | int], ds: Dataset, n_frames: int
) -> np.ndarray:
    """What pydicom decoded (`arr`, described by `meta`), as `decode_frames` returns it:
    `n_frames` frames, palette expanded, checked, native-endian and writeable."""
    photometric = str(meta.get("photometric_interpretation", ""))
    samples = int(meta.get("samples_per_pixel", 1))
    single_frame_ndim = 2 if samples == 1 else 3
    if arr.ndim == single_frame_ndim:
        arr = arr[np.newaxis]
    if arr.shape[0] != n_frames:
        raise PixelDecodeError(
            f"cannot decode pixel data: {arr.shape[0]} frames decoded, {n_frames} expected"
        )

    if photometric == "PALETTE COLOR":
        if samples != 1:
            raise PixelDecodeError(
                "cannot decode pixel data: PALETTE COLOR with several samples per pixel"
            )
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise PixelDecodeError(
                f"cannot decode pixel data: palette lookup table unusable ({type(exc).__name__})"
            ) from exc
    elif samples == 3 and photometric != "RGB":
        # PS3.3 C.7.6.3.1.2: anything else with three samples (YBR_PARTIAL_420, HSV, ...) is
        # either retired or lossy-only and was not converted by the backend.
        raise PixelDecodeError(
            f"cannot decode pixel data: unsupported Photometric Interpretation {photometric}"
        )
    elif samples == 1 and photometric not in MONOCHROME:
        raise PixelDecodeError(
            f"cannot decode pixel data: unsupported Photometric Interpretation {photometric}"
        )
    elif samples not in (1, 3):
        raise PixelDecodeError(f"cannot decode pixel data: unsupported Samples per Pixel {samples}")

    if not arr.dtype.isnative:  # Explicit VR Big Endian (retired, PS3.5 A.3) decodes as >i2
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def _stretch(values: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0..255: OCR needs contrast, not calibrated values."""
    values = values.astype(np.float64, copy=False)
    low = float(np.min(values)) if values.size else 0.0
    high = float(np.max(values)) if values.size else 0.0
    return _stretched(values, low, high)


def _stretched(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _windowed(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT / Rescale, then VOI LUT or Window; the values themselves when the
    dataset's description of them is broken (the OCR view only needs contrast)."""
    try:
        return apply_voi_lut(apply_modality_lut(values, ds), ds)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        logger.warning(
            "VOI/Modality LUT not usable for the OCR view (%s); using a min-max stretch",
            type(exc).__name__,
        )
        return values


def _through_table(frame: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """`_stretch(_windowed(frame))` computed once per stored value instead of once per
    pixel: every step is a function of the pixel's value alone, so a table over the
    frame's range gives the same bytes at a tenth of the cost (float64 over a 512x512
    slice took ~4 ms). None when the range is too wide for a table."""
    if frame.dtype.kind not in "ui" or frame.dtype.itemsize > 4 or frame.size == 0:
        return None
    low, high = int(frame.min()), int(frame.max())
    if high - low >= TABLE_SPAN:
        return None
    mapped = _windowed(np.arange(low, high + 1, dtype=frame.dtype), ds).astype(np.float64)
    if frame.dtype.itemsize <= 2:  # offsets from `low` in modular arithmetic: no widening
        unsigned = np.dtype(f"uint{frame.dtype.itemsize * 8}")
        index = frame.view(unsigned) - unsigned.type(low % (1 << (frame.dtype.itemsize * 8)))
    else:
        index = frame.astype(np.int64) - low
    steps = np.diff(mapped)
    if bool((steps >= 0).all() or (steps <= 0).all()):  # the frame's min and max map to the ends
        present = mapped[[0, -1]]
    else:
        present = mapped[np.bincount(index.ravel(), minlength=mapped.size) > 0]
    table = _stretched(mapped, float(present.min()), float(present.max()))
    return np.take(table, index)


def ocr_image(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """A uint8 2-D grayscale view of one decoded frame, as a viewer would show it, for OCR.

    Monochrome: Modality LUT / Rescale (PS3.3 C.11.1), then VOI LUT or Window (C.11.2) when
    present, then a min-max stretch; MONOCHROME1 (C.7.6.3.1.2: minimum is white) is inverted
    so text has the same polarity a viewer shows. Colour (RGB after `decode_frames`): ITU-R
    BT.601 luminance, scaled from the sample's full range. A broken VOI description falls
    back to a plain stretch rather than failing: the OCR view only needs contrast.
    """
    if frame.ndim == 3 and frame.shape[-1] == 3:
        rgb = frame.astype(np.float64)
        luminance = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        # Full scale of the sample type: 8-bit RGB, or 16-bit RGB from a 16-bit palette.
        full = float(np.iinfo(frame.dtype).max) if frame.dtype.kind in "ui" else 255.0
        return np.clip(np.rint(luminance * (255.0 / full)), 0, 255).astype(np.uint8)
    if frame.ndim != 2:
        raise ValueError(f"ocr_image needs one frame (rows, cols[, 3]), got shape {frame.shape}")

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric in MONOCHROME:
        tabled = _through_table(frame, ds)
        image = tabled if tabled is not None else _stretch(_windowed(frame, ds))
    else:
        image = _stretch(frame)
    if photometric == "MONOCHROME1":
        image = 255 - image
    return image


def _fits(extremes: tuple[int, int] | None, bits_stored: int, signed: bool) -> bool:
    if extremes is None:
        return True
    low = -(1 << (bits_stored - 1)) if signed else 0
    high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
    return extremes[0] >= low and extremes[1] <= high


def extremes_of(frames: np.ndarray) -> tuple[int, int] | None:
    """The least and the greatest value in `frames` (None: no values)."""
    return (int(frames.min()), int(frames.max())) if frames.size else None


def describe_frames(
    ds: Dataset, shape: tuple[int, ...], dtype: np.dtype, extremes: tuple[int, int] | None
) -> dict[str, int | str]:
    """Image Pixel module values (PS3.3 C.7.6.3) that describe frames of `shape` (frames
    first) and `dtype` whose values span `extremes` (`extremes_of`) exactly."""
    if len(shape) == 4 and shape[-1] == 3:
        colour = True
    elif len(shape) == 3:
        colour = False
    else:
        raise ValueError(f"frames must be (frames, rows, cols[, 3]), got shape {shape}")
    if dtype.kind not in "ui" or dtype.itemsize > 4:
        raise ValueError(f"frames must be integers of at most 32 bits, got {dtype}")
    signed = dtype.kind == "i"
    old_photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    one_bit = not colour and ds.get("BitsAllocated") == 1 and dtype == np.uint8
    one_bit = one_bit and _fits(extremes, 1, False)
    if one_bit:
        # PS3.3 C.8.20.2.1 (Segmentation): BINARY segments must stay 1-bit.
        bits_allocated = bits_stored = 1
    else:
        bits_allocated = dtype.itemsize * 8
        bits_stored = bits_allocated
        old_stored = ds.get("BitsStored")
        if (
            old_photometric != "PALETTE COLOR"
            and ds.get("BitsAllocated") == bits_allocated
            and isinstance(old_stored, int)
            and 0 < old_stored < bits_allocated
            and _fits(extremes, old_stored, signed)
        ):
            bits_stored = old_stored  # e.g. 12 of 16 bits: keep what the modality declared
    if colour:
        photometric = "RGB"
    elif old_photometric in (*MONOCHROME, "PALETTE COLOR"):
        photometric = old_photometric
    else:
        photometric = "MONOCHROME2"
    return {
        "rows": shape[1],
        "columns": shape[2],
        "samples": 3 if colour else 1,
        "photometric": photometric,
        "bits_allocated": bits_allocated,
        "bits_stored": bits_stored,
        "signed": int(signed),
    }


def _set_pixel_module(ds: Dataset, desc: dict[str, int | str], n_frames: int) -> None:
    ds.Rows = desc["rows"]
    ds.Columns = desc["columns"]
    ds.SamplesPerPixel = desc["samples"]
    ds.PhotometricInterpretation = desc["photometric"]
    ds.BitsAllocated = desc["bits_allocated"]
    ds.BitsStored = desc["bits_stored"]
    ds.HighBit = int(desc["bits_stored"]) - 1
    ds.PixelRepresentation = desc["signed"]
    if desc["samples"] == 3:
        ds.PlanarConfiguration = 0  # PS3.3 C.7.6.3.1.3: colour-by-pixel, as numpy holds it
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration  # Type 1C: only when Samples per Pixel > 1
    if "NumberOfFrames" in ds or n_frames > 1:
        # Kept when present; not added to single-frame IODs (e.g. CT Image) that lack it.
        ds.NumberOfFrames = n_frames


def _native_bytes(frames: np.ndarray, one_bit: bool) -> bytes:
    if one_bit:
        return pack_bits(frames, pad=True)
    data = frames.astype(frames.dtype.newbyteorder("<"), copy=False).tobytes()
    return data + b"\x00" if len(data) % 2 else data  # PS3.5 7.1.1: even value length


def holds(ds: Dataset, frames: np.ndarray) -> bool:
    """Whether the Pixel Data of `ds` already is `frames` (as `decode_frames` returned them)
    bit for bit, so that nothing need be written back when nothing was blanked: native
    little-endian data whose bytes are the frames' (no bits outside Bits Stored, where a
    retired overlay could hide), or compressed data with no bits outside Bits Stored."""
    tsyntax = _transfer_syntax(ds)
    allocated, stored = ds.get("BitsAllocated"), ds.get("BitsStored")
    if tsyntax.is_compressed:
        return allocated is not None and allocated == stored
    if not tsyntax.is_little_endian or "PixelData" not in ds:
        return False
    one_bit = allocated == 1 and frames.ndim == 3 and frames.dtype == np.uint8
    data = ds.PixelData
    return isinstance(data, bytes) and data == _native_bytes(frames, one_bit)


def write_frames(ds: Dataset, frames: np.ndarray, encoding: str = "uncompressed") -> None:
    """Replace the Pixel Data of `ds` with `frames` (as `decode_frames` returned them).

    Writes Explicit VR Little Endian ("uncompressed"; also for big-endian and deflated
    inputs), RLE Lossless ("rle") or JPEG-LS Lossless ("jpeg-ls", needs pyjpegls), and makes the
    Image Pixel module (PS3.3 C.7.6.3) describe the new data: colour becomes RGB with Planar
    Configuration 0 and the palette LUT elements are removed; Bits Allocated/Stored, High Bit
    and Pixel Representation follow the array's dtype (Bits Stored is kept when the values
    still fit it); Number of Frames is kept. File Meta Transfer Syntax UID is updated. The
    dataset is only changed once the new Pixel Data has been built, so a failure leaves it
    as it was. SOP Instance UID is left alone: the de-identification engine owns UIDs.
    """
    tsyntax = output_syntax(encoding)
    frames = np.asarray(frames)
    desc = describe_frames(ds, frames.shape, frames.dtype, extremes_of(frames))
    n_frames = frames.shape[0]
    one_bit = desc["bits_allocated"] == 1

    staging = Dataset()  # built apart from `ds` so a failed encode changes nothing
    _set_pixel_module(staging, desc, n_frames)
    if n_frames > 1:
        staging.NumberOfFrames = n_frames
    staging["PixelData"] = DataElement(0x7FE00010, pixel_vr(desc), _native_bytes(frames, one_bit))
    staging.file_meta = FileMetaDataset()
    staging.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if tsyntax != ExplicitVRLittleEndian:
        check_encoder(tsyntax, one_bit)
        try:
            staging.compress(tsyntax, generate_instance_uid=False)
        except Exception as exc:
            raise PixelEncodeError(
                f"cannot encode pixel data as {tsyntax.name} ({type(exc).__name__})"
            ) from exc
    set_pixel_header(ds, desc, n_frames, tsyntax)
    ds["PixelData"] = staging["PixelData"]


def output_syntax(encoding: str) -> UID:
    """The transfer syntax `write_frames` writes for `encoding` (an ENCODINGS key)."""
    if encoding not in ENCODINGS:
        raise ValueError(
            f"unknown pixel encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}"
        )
    return ENCODINGS[encoding]


def pixel_vr(desc: dict[str, int | str]) -> str:
    """The VR of native Pixel Data described by `desc` (PS3.5 8.2)."""
    return "OB" if int(desc["bits_allocated"]) <= 8 else "OW"


def check_encoder(tsyntax: UID, one_bit: bool) -> None:
    """PixelEncodeError unless frames can be encoded in `tsyntax` here."""
    if one_bit:
        raise PixelEncodeError(f"{tsyntax.name} cannot encode 1-bit pixel data")
    encoder = get_encoder(tsyntax)
    if not encoder.is_available:
        missing = "; ".join(encoder.missing_dependencies) or "a plugin"
        raise PixelEncodeError(f"no lossless {tsyntax.name} encoder is installed (needs {missing})")


def set_pixel_header(ds: Dataset, desc: dict[str, int | str], n_frames: int, tsyntax: UID) -> None:
    """Make the header of `ds` describe new Pixel Data (`desc`, `n_frames` frames, in
    `tsyntax`), as `write_frames` does before it sets the Pixel Data itself."""
    old_meta = getattr(ds, "file_meta", None)
    old_tsyntax = old_meta.get("TransferSyntaxUID") if old_meta is not None else None
    if old_tsyntax in LOSSY_ONLY and "LossyImageCompression" not in ds:
        # PS3.3 C.7.6.1.1.5: once lossy, always flagged lossy, even when stored losslessly now.
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    was_colour_converted = desc["samples"] == 3
    _set_pixel_module(ds, desc, n_frames)
    if was_colour_converted:
        for tag in PALETTE_TAGS:
            if tag in ds:
                del ds[tag]
    for tag in ENCAPSULATION_TAGS:
        if tag in ds:
            del ds[tag]
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = tsyntax

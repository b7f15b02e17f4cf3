"""Metadata carried from a source image to its exports: ICC profile, EXIF and Photo Sphere (GPano) XMP.

What the store holds (``source_metadata``, recorded at ingest by :func:`odisr.io.read_metadata`)::

    {"format": "JPEG", "orientation": 6, "icc_profile": "<base64>" | None, "exif": "<base64>" | None,
     "gpano": {"PoseHeadingDegrees": "87.5", ...}, "dropped": {"icc_profile": "2,345,678 bytes > ..."}}

What an export gets (:func:`output_metadata`):

* the ICC profile, byte for byte (colour-managed viewers render the same colours as the source);
* the EXIF block with ``Orientation`` reset to 1 (the stored pixels are already upright: :func:`odisr.io.read_image`
  applied the source's orientation) and ``PixelXDimension``/``PixelYDimension`` set to the output's size when the
  source had them;
* for equirectangular outputs (2:1), a Photo Sphere XMP packet (Google's GPano schema,
  https://developers.google.com/streetview/spherical-metadata): ``ProjectionType=equirectangular``,
  ``UsePanoramaViewer``, ``FullPanoWidthPixels``/``FullPanoHeightPixels`` and ``CroppedArea*`` for the whole
  sphere at the output's size, plus the pose, initial view and capture facts the source carried
  (:data:`CARRIED_GPANO`). Google Photos, Facebook, Pannellum and Photo Sphere Viewer read it.

How each container takes them: JPEG, WebP and 8-bit PNG through Pillow's ``icc_profile=``/``exif=``/``xmp=``
(PNG: ``iCCP``, ``eXIf`` and an ``iTXt XML:com.adobe.xmp`` chunk); 16-bit PNG (encoded by OpenCV) gets the same
chunks inserted after ``IHDR`` (:func:`png_chunks`); TIFF the ``InterColorProfile`` (34675) and ``XMLPacket`` (700)
tags plus the descriptive IFD0 EXIF tags (:func:`tiff_tags`: Make, Model, DateTime, Artist, Copyright). TIFF outputs
do not carry the EXIF sub-IFDs (exposure, GPS): tifffile writes no nested IFDs.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

GPANO_NS = "http://ns.google.com/photos/1.0/panorama/"
#: GPano properties copied from the source to every ERP output (the geometry ones are recomputed for the output).
CARRIED_GPANO = (
    "PoseHeadingDegrees",
    "PosePitchDegrees",
    "PoseRollDegrees",
    "InitialViewHeadingDegrees",
    "InitialViewPitchDegrees",
    "InitialViewRollDegrees",
    "InitialHorizontalFOVDegrees",
    "CaptureSoftware",
    "StitchingSoftware",
    "FirstPhotoDate",
    "LastPhotoDate",
    "SourcePhotosCount",
    "ExposureLockUsed",
)
#: Largest XMP packet :func:`parse_gpano` reads (bytes); real packets are a few KB (Lightroom's with history ~100 KB).
MAX_XMP_BYTES = 1 << 20
#: IFD0 EXIF tags a TIFF export keeps (ASCII): Make, Model, DateTime, Artist, Copyright.
TIFF_EXIF_TAGS = (271, 272, 306, 315, 33432)
ORIENTATION, EXIF_IFD, PIXEL_X, PIXEL_Y = 0x0112, 0x8769, 0xA002, 0xA003
_XPACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"  # the fixed id of every XMP packet (XMP spec part 3, 7.3.2)


@dataclass(frozen=True)
class OutputMetadata:
    """The metadata of one output image: ICC profile bytes, EXIF (``Exif\\0\\0`` + TIFF structure, as JPEG's APP1
    holds it) and the XMP packet (UTF-8); each None when absent."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None

    def without_exif_xmp(self) -> OutputMetadata:
        """Only the colour profile (cube faces and pyramid tiles: the EXIF/GPano of the whole panorama do not apply)."""
        return OutputMetadata(self.icc_profile)


# ---------------------------------------------------------------------------------------------------- reading XMP


def parse_gpano(xmp: bytes | str) -> dict[str, str]:
    """The GPano properties of an XMP packet, ``{name: value}`` as strings (``{}`` when it has none).

    Properties may be written as attributes of ``rdf:Description`` or as child elements; both are read.
    ElementTree resolves no external entities and Python's expat refuses entity-expansion bombs.

    Raises:
        ValueError: the packet is larger than :data:`MAX_XMP_BYTES` or not well-formed XML.
    """
    data = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    if len(data) > MAX_XMP_BYTES:
        raise ValueError(f"XMP packet of {len(data):,} bytes > {MAX_XMP_BYTES:,}; ignored")
    try:
        root = ElementTree.fromstring(data.strip(b"\x00 \t\r\n"))
    except ElementTree.ParseError as exc:
        raise ValueError(f"XMP packet is not well-formed XML ({exc}); ignored") from None
    prefix = "{" + GPANO_NS + "}"
    found = {}
    for element in root.iter():
        found.update({k[len(prefix) :]: v for k, v in element.attrib.items() if k.startswith(prefix)})
        if element.tag.startswith(prefix) and element.text and element.text.strip():
            found[element.tag[len(prefix) :]] = element.text.strip()
    return found


# ---------------------------------------------------------------------------------------------------- writing


def gpano_xmp(width: int, height: int, carried: Mapping[str, str] | None = None) -> bytes:
    """A Photo Sphere XMP packet for a full-sphere equirectangular image of ``width × height`` pixels.

    ``carried``: GPano properties of the source; those in :data:`CARRIED_GPANO` are kept, the geometry is the
    output's (``FullPano*`` = ``CroppedAreaImage*`` = the output size, ``CroppedArea{Left,Top}Pixels`` = 0).
    """
    props = {k: str(v) for k, v in (carried or {}).items() if k in CARRIED_GPANO}
    props |= {
        "UsePanoramaViewer": "True",
        "ProjectionType": "equirectangular",
        "FullPanoWidthPixels": str(width),
        "FullPanoHeightPixels": str(height),
        "CroppedAreaImageWidthPixels": str(width),
        "CroppedAreaImageHeightPixels": str(height),
        "CroppedAreaLeftPixels": "0",
        "CroppedAreaTopPixels": "0",
    }
    attributes = "".join(f"\n    GPano:{name}={quoteattr(value)}" for name, value in props.items())
    packet = (
        f'<?xpacket begin="\ufeff" id="{_XPACKET_ID}"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="odisr">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'  <rdf:Description rdf:about="" xmlns:GPano="{GPANO_NS}"{attributes}/>\n'
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def output_exif(exif_b64: str, width: int, height: int) -> bytes:
    """The source's EXIF (base64 of the TIFF-structured block) for an output of ``width × height``: Orientation 1,
    PixelX/YDimension updated when present. Returns ``b"Exif\\0\\0" + TIFF structure``."""
    from PIL import Image

    exif = Image.Exif()
    exif.load(base64.b64decode(exif_b64))
    exif[ORIENTATION] = 1
    sub = exif.get_ifd(EXIF_IFD)
    for tag, value in ((PIXEL_X, width), (PIXEL_Y, height)):
        if tag in sub:
            sub[tag] = value
    return exif.tobytes()


def output_metadata(source: Mapping[str, Any] | None, width: int, height: int) -> OutputMetadata:
    """What an output of ``width × height`` carries, from the pair's ``source_metadata`` (None: nothing recorded).

    GPano XMP is written when the output is equirectangular (``width == 2 · height``), whatever the source had.
    """
    source = source or {}
    icc = source.get("icc_profile")
    exif = source.get("exif")
    erp = width == 2 * height
    return OutputMetadata(
        icc_profile=base64.b64decode(icc) if icc else None,
        exif=output_exif(exif, width, height) if exif else None,
        xmp=gpano_xmp(width, height, source.get("gpano")) if erp else None,
    )


def pillow_options(meta: OutputMetadata, fmt: str) -> dict[str, Any]:
    """``Image.save`` keywords that embed ``meta`` in a JPEG, WebP or PNG file (WebP's and PNG's EXIF without the
    JPEG header; PNG's XMP as the ``iTXt`` chunk ``XML:com.adobe.xmp``)."""
    options: dict[str, Any] = {}
    if meta.icc_profile:
        options["icc_profile"] = meta.icc_profile
    if meta.exif:
        options["exif"] = meta.exif if fmt == "JPEG" else meta.exif.removeprefix(b"Exif\x00\x00")
    if meta.xmp and fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        options["pnginfo"] = info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8"))
    elif meta.xmp:
        options["xmp"] = meta.xmp
    return options


def png_chunks(meta: OutputMetadata) -> bytes:
    """``iCCP`` (zlib-compressed profile), ``eXIf`` (TIFF structure) and ``iTXt`` ``XML:com.adobe.xmp`` chunks,
    concatenated, to insert right after ``IHDR`` (PNG spec 3rd ed.: iCCP and eXIf before ``IDAT``)."""
    chunks = []
    if meta.icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta.icc_profile)))
    if meta.exif:
        chunks.append(_png_chunk(b"eXIf", meta.exif.removeprefix(b"Exif\x00\x00")))
    if meta.xmp:  # keyword, null, compression flag 0, method 0, empty language tag and translated keyword
        chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + meta.xmp))
    return b"".join(chunks)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiff_tags(meta: OutputMetadata) -> tuple[bytes | None, list[tuple[int, str, int, Any, bool]]]:
    """``(iccprofile, extratags)`` for ``tifffile.TiffWriter.write``: the profile, and the XMP packet (tag 700,
    BYTE) plus the :data:`TIFF_EXIF_TAGS` found in the EXIF block (ASCII)."""
    tags: list[tuple[int, str, int, Any, bool]] = []
    if meta.exif:
        from PIL import Image

        exif = Image.Exif()
        exif.load(meta.exif)
        for tag in TIFF_EXIF_TAGS:
            value = exif.get(tag)
            if isinstance(value, str) and value:
                tags.append((tag, "s", 0, value, True))
    if meta.xmp:
        tags.append((700, "B", len(meta.xmp), meta.xmp, True))
    return meta.icc_profile, tags

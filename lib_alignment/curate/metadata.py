"""The prompt (and seed, settings, checkpoint) an image on disk was made with, read from its metadata only.

A1111/Forge write their infotext into the PNG text chunk "parameters" and into the EXIF UserComment of
JPEG/WebP files; ComfyUI writes its graph as JSON into the PNG chunks "prompt" (API format) and
"workflow" (editor format). PIL reads PNG text chunks and EXIF while opening a file, before any pixel is
decoded, so reading metadata costs one header read per image.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# "Key: value" pairs of an infotext's last line; values are plain up to the next comma, or JSON-quoted.
_PARAM = re.compile(r'\s*([\w][\w \-/+.()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass
class ImageMeta:
    """What one image's metadata says. prompt is None when it could not be read; `reason` says why."""

    prompt: str | None = None
    negative_prompt: str = ""
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    checkpoint_hash: str = ""
    source: str = ""  # "a1111" (A1111/Forge infotext), "comfyui", "caption" (typed by hand)
    infotext: str = ""
    reason: str = ""

    @property
    def readable(self) -> bool:
        return self.prompt is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "settings": self.settings,
            "checkpoint": self.checkpoint,
            "checkpoint_hash": self.checkpoint_hash,
            "source": self.source,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageMeta:
        keys = ("prompt", "negative_prompt", "seed", "settings", "checkpoint", "checkpoint_hash", "source", "reason")
        return cls(**{key: data[key] for key in keys if key in data})


def parse_infotext(text: str) -> ImageMeta:
    """A1111's infotext: prompt lines, "Negative prompt: …" lines, then one "Key: value, …" line."""
    lines = text.strip().split("\n")
    params: dict[str, Any] = {}
    if lines and len(_PARAM.findall(lines[-1])) >= 3:
        for key, value in _PARAM.findall(lines.pop()):
            value = value.strip()
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                try:
                    value = json.loads(value)
                except ValueError:
                    value = value[1:-1]
            params[key.strip()] = value
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if negative_lines or line.startswith("Negative prompt:"):
            negative_lines.append(line[len("Negative prompt:") :].strip() if not negative_lines else line)
        else:
            prompt_lines.append(line)
    meta = ImageMeta(
        prompt="\n".join(prompt_lines).strip(),
        negative_prompt="\n".join(negative_lines).strip(),
        source="a1111",
        infotext=text,
    )
    meta.seed = _int(params.pop("Seed", None))
    meta.checkpoint = str(params.pop("Model", "") or "")
    meta.checkpoint_hash = str(params.pop("Model hash", "") or "")
    size = _SIZE.match(str(params.get("Size", "")))
    if size:
        params["Width"], params["Height"] = int(size.group(1)), int(size.group(2))
    meta.settings = params
    if not meta.prompt and not params:
        meta.prompt = None
        meta.reason = "infotext without a prompt"
    return meta


def read_metadata(path: Path) -> ImageMeta:
    """The metadata of one image file, without decoding its pixels; never raises for a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            info = dict(image.info)
            exif = image.getexif() if image.format in ("JPEG", "WEBP", "MPO", "TIFF") else None
            fmt = image.format or "?"
    except (OSError, UnidentifiedImageError, ValueError) as error:
        return ImageMeta(reason=f"not a readable image ({type(error).__name__})")
    return metadata_from_info(info, exif, fmt)


def metadata_from_info(info: dict[str, Any], exif: Any, fmt: str = "PNG") -> ImageMeta:
    """Metadata from PIL's `image.info` and `image.getexif()` (what read_metadata gets from a file)."""
    text = info.get("parameters")
    if isinstance(text, str) and text.strip():
        return parse_infotext(text)
    comment = user_comment(exif) if exif is not None else None
    if comment:
        return parse_infotext(comment)
    if isinstance(info.get("prompt"), str) or isinstance(info.get("workflow"), str):
        return comfyui_metadata(info.get("prompt"), info.get("workflow"))
    if fmt == "PNG":
        return ImageMeta(reason="no A1111/Forge infotext or ComfyUI metadata in the PNG")
    return ImageMeta(reason=f"no infotext in the {fmt} EXIF")


def user_comment(exif: Any) -> str | None:
    """EXIF UserComment (tag 0x9286 in the Exif IFD), decoded from its 8-byte character-code prefix."""
    try:
        raw = exif.get_ifd(0x8769).get(0x9286)
    except (AttributeError, KeyError, ValueError, OSError):
        raw = None
    if raw is None:
        raw = exif.get(0x9286) if hasattr(exif, "get") else None
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.strip("\x00").strip() or None
    code, body = bytes(raw[:8]), bytes(raw[8:])
    if code.startswith(b"UNICODE"):
        text = _utf16(body)
    elif code.startswith(b"ASCII") or code == b"\x00" * 8:
        text = body.decode("utf-8", errors="replace")
    else:
        text = bytes(raw).decode("utf-8", errors="replace")
    return text.strip("\x00").strip() or None


def _utf16(body: bytes) -> str:
    """UTF-16 of either byte order: piexif (A1111) writes big-endian, some tools little-endian."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body.decode("utf-16")
    even_zeros = body[0::2].count(0)
    odd_zeros = body[1::2].count(0)
    return body.decode("utf-16-be" if even_zeros >= odd_zeros else "utf-16-le", errors="replace")


# --- ComfyUI --------------------------------------------------------------------------------------


def comfyui_metadata(prompt_json: str | None, workflow_json: str | None) -> ImageMeta:
    """Prompt, negative, seed and settings of a ComfyUI image: the API graph ("prompt") when present,
    else the editor graph ("workflow"), followed from the sampler's positive/negative inputs."""
    for raw, reader in ((prompt_json, _from_api_graph), (workflow_json, _from_workflow)):
        if not raw:
            continue
        try:
            graph = json.loads(raw)
        except ValueError:
            continue
        if isinstance(graph, dict):
            meta = reader(graph)
            if meta is not None:
                meta.source = "comfyui"
                return meta
    return ImageMeta(reason="ComfyUI metadata without a text prompt")


def _from_api_graph(graph: dict[str, Any]) -> ImageMeta | None:
    nodes = {key: node for key, node in graph.items() if isinstance(node, dict) and "inputs" in node}

    def text_of(ref: Any, depth: int = 0) -> str | None:
        """The text a link leads to: a text encoder's "text" (itself maybe a link), or a string node's value."""
        if isinstance(ref, str):
            return ref
        if not (isinstance(ref, list) and ref and depth < 8):
            return None
        node = nodes.get(str(ref[0]))
        if node is None:
            return None
        inputs = node.get("inputs", {})
        for key in ("text", "text_g", "string", "value", "prompt", "conditioning", "positive", "conditioning_1"):
            if key in inputs:
                found = text_of(inputs[key], depth + 1)
                if found is not None:
                    return found
        return None

    samplers = [node for node in nodes.values() if "positive" in node.get("inputs", {})]
    if samplers:
        sampler = samplers[0]
        inputs = sampler["inputs"]
        prompt = text_of(inputs.get("positive"))
        if prompt is not None:
            meta = ImageMeta(prompt=prompt.strip(), negative_prompt=(text_of(inputs.get("negative")) or "").strip())
            meta.seed = _int(inputs.get("seed", inputs.get("noise_seed")))
            meta.settings = {
                key: inputs[key] for key in ("steps", "cfg", "sampler_name", "scheduler", "denoise") if _plain(inputs.get(key))
            }
            meta.settings["class_type"] = sampler.get("class_type", "")
            for node in nodes.values():
                ckpt = node.get("inputs", {}).get("ckpt_name")
                if isinstance(ckpt, str):
                    meta.checkpoint = ckpt
                    break
            return meta
    texts = [node["inputs"]["text"] for node in nodes.values() if isinstance(node["inputs"].get("text"), str)]
    if texts:
        return ImageMeta(prompt=max(texts, key=len).strip())
    return None


def _from_workflow(graph: dict[str, Any]) -> ImageMeta | None:
    nodes = {node.get("id"): node for node in graph.get("nodes", []) if isinstance(node, dict)}
    links = {link[0]: link for link in graph.get("links", []) if isinstance(link, list) and len(link) >= 4}

    def source_text(node: dict[str, Any], name: str) -> str | None:
        for slot in node.get("inputs") or []:
            if slot.get("name") == name and slot.get("link") in links:
                upstream = nodes.get(links[slot["link"]][1])
                values = (upstream or {}).get("widgets_values") or []
                if values and isinstance(values[0], str):
                    return values[0]
        return None

    for node in nodes.values():
        if any(slot.get("name") == "positive" for slot in node.get("inputs") or []):
            prompt = source_text(node, "positive")
            if prompt is not None:
                meta = ImageMeta(prompt=prompt.strip(), negative_prompt=(source_text(node, "negative") or "").strip())
                values = node.get("widgets_values") or []
                if values and isinstance(values[0], int):
                    meta.seed = values[0]
                meta.settings = {"class_type": node.get("type", "")}
                return meta
    texts = [
        (node.get("widgets_values") or [None])[0]
        for node in nodes.values()
        if "CLIPTextEncode" in str(node.get("type", ""))
    ]
    texts = [text for text in texts if isinstance(text, str)]
    return ImageMeta(prompt=max(texts, key=len).strip()) if texts else None


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip()) if value is not None and str(value).strip() != "" else None
    except ValueError:
        return None


# --- grouping ---------------------------------------------------------------------------------------

_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]])")
_BRACKETS = re.compile(r"[(){}\[\]]")


def normalise_prompt(prompt: str) -> str:
    """The prompt with case, emphasis brackets and weights, spacing and empty or repeated comma
    parts removed: near-identical prompts ("A cat, (red:1.2)" and "a cat,red") get the same key."""
    text = _BRACKETS.sub(" ", _WEIGHT.sub("", prompt.lower()))
    parts = []
    for part in re.split(r"[,\n]", text):
        part = " ".join(part.split()).strip(" .;")
        if part and part not in parts:
            parts.append(part)
    return ", ".join(parts)

"""Fake of A1111's built-in Lora extension module `networks` (extensions-builtin/Lora is on sys.path there).

Same names as v1.10.1: `available_networks` (name → NetworkOnDisk with name, alias, filename,
metadata) and `list_available_networks()`, which rescans `shared.cmd_opts.lora_dir`.
"""

import json
import os

from modules import shared

available_networks = {}
scans = []


def _metadata(filename):
    if not filename.endswith(".safetensors"):
        return {}
    with open(filename, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    return header.get("__metadata__", {})


class NetworkOnDisk:
    def __init__(self, name, filename):
        self.name = name
        self.filename = filename
        self.metadata = _metadata(filename)
        self.alias = self.metadata.get("ss_output_name", name)


def list_available_networks():
    available_networks.clear()
    folder = shared.cmd_opts.lora_dir
    for root, _dirs, files in os.walk(folder):
        for file in sorted(files):
            if os.path.splitext(file)[1].lower() in (".pt", ".ckpt", ".safetensors"):
                name = os.path.splitext(file)[0]
                available_networks[name] = NetworkOnDisk(name, os.path.join(root, file))
    scans.append(len(available_networks))

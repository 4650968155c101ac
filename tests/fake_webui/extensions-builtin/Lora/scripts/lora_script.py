"""Fake of the Lora extension's scripts/lora_script.py: its API routes, registered through on_app_started."""

import networks
from modules import script_callbacks


def create_lora_json(obj):
    return {"name": obj.name, "alias": obj.alias, "path": obj.filename, "metadata": obj.metadata}


def api_networks(_, app):
    @app.get("/sdapi/v1/loras")
    async def get_loras():
        return [create_lora_json(obj) for obj in networks.available_networks.values()]

    @app.post("/sdapi/v1/refresh-loras")
    async def refresh_loras():
        return networks.list_available_networks()


script_callbacks.on_app_started(api_networks)

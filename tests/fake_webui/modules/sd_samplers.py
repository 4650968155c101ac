import types


def visible_samplers():
    return [types.SimpleNamespace(name=name) for name in ("DPM++ 2M", "Euler a", "Euler", "DDIM")]

"""Fake of modules.script_callbacks: records callbacks the way A1111 does."""

ui_tabs_callbacks = []
app_started_callbacks = []


def on_ui_tabs(callback):
    ui_tabs_callbacks.append(callback)


def on_app_started(callback):
    app_started_callbacks.append(callback)


def clear_callbacks():
    ui_tabs_callbacks.clear()
    app_started_callbacks.clear()

"""Fake of A1111's launch module for install.py: records pip calls instead of running them."""

import importlib.util

installed: dict = {}
pip_calls: list = []


def is_installed(package):
    if package in installed:
        return installed[package] is not None
    return importlib.util.find_spec(package) is not None


def run_pip(command, desc=None, live=False):
    pip_calls.append((command, desc))
    return ""

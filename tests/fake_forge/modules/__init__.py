"""Fake Forge `modules`: Forge's own versions here, the fake A1111's for everything Forge left alone."""

import os

__path__.append(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fake_webui", "modules"))

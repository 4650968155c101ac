"""WebUI entry point (A1111 / Forge): registers the Rank & Refine and Alignment Training tabs.

All logic lives in the bundled `lib_alignment` package; this file only wires it in.
"""

from lib_alignment.ui.webui_tabs import register

register()

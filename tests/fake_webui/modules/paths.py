import os
import tempfile

# Only make a temporary folder when the test did not name one (a default argument would always make one).
data_path = os.environ.get("FAKE_WEBUI_DATA") or tempfile.mkdtemp(prefix="fake-webui-")
models_path = os.path.join(data_path, "models")
script_path = data_path

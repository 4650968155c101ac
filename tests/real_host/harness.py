"""A real, unmodified WebUI (A1111 v1.10.1 or Forge) built by a host kit, with this extension installed
the way a user installs it (the checkout copied into `extensions/`), started and driven over HTTP.

The kits live in ../shared/hosts/{a1111,forge}/ (their READMEs: build, start, readiness); a built kit
folder is named by ALIGNMENT_A1111_HOST / ALIGNMENT_FORGE_HOST. Every start appends to one log, so a
test can look for tracebacks over the whole session.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXTENSION_NAME = "sd-webui-alignment"
API_USER, API_PASSWORD = "alice", "real-host-secret"
#: A second API user (A1111 only): Rank & Refine sessions of one user are invisible to the other.
OTHER_USER, OTHER_PASSWORD = "bob", "real-host-other"
LORA_PREFIX = "rh-"  # every LoRA the suite trains or writes is named rh-...


@dataclass(frozen=True)
class Kit:
    """What differs between the two kits."""

    kind: str  # "a1111" | "forge"
    env_var: str
    ready_lines: tuple[str, ...]  # all in the log once the WebUI can generate and every extension's routes exist
    checkpoint: str  # file name in models/Stable-diffusion
    lora: str  # the kit's own LoRA name in models/Lora
    start_timeout: float


KITS = {
    # A1111 may load the model before or after "Startup time:", which follows the app_started callbacks
    # (our routes); /sdapi/v1/* answers a moment before those callbacks run.
    "a1111": Kit("a1111", "ALIGNMENT_A1111_HOST", ("Startup time:", "Model loaded in"), "tiny-harness.safetensors", "tiny-harness-lora", 240),
    "forge": Kit("forge", "ALIGNMENT_FORGE_HOST", ("Startup time:",), "sd15-host.safetensors", "sd15-host-lora", 300),
}


def kit_dir(kind: str) -> Path | None:
    """The built kit named by the environment, or None (the suite then skips, unless required)."""
    value = os.environ.get(KITS[kind].env_var, "").strip()
    return Path(value).resolve() if value else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tracked_files(root: Path) -> list[str]:
    """What a `git clone` of this checkout would hold (tracked plus new, unignored files)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (root / name).is_file()]


def install_extension(webui: Path, source: Path = ROOT) -> Path:
    """Copy the checkout into webui/extensions/ as a user's clone would be (no venvs, no caches)."""
    target = webui / "extensions" / EXTENSION_NAME
    if target.exists():
        shutil.rmtree(target)
    for name in tracked_files(source):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, destination)
    return target


@dataclass
class RealHost:
    """One kit's WebUI: start/stop/restart, HTTP with the API credentials, the log."""

    kit: Kit
    dir: Path
    port: int = field(default_factory=free_port)
    extra_args: str = ""
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def webui(self) -> Path:
        return self.dir / "webui"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def python(self) -> Path:
        return self.dir / "venv" / "bin" / "python"

    @property
    def log_path(self) -> Path:
        return self.dir / "logs" / f"real-host-{self.port}.log"

    @property
    def lora_dir(self) -> Path:
        return self.webui / "models" / "Lora"

    @property
    def checkpoint(self) -> Path:
        return self.webui / "models" / "Stable-diffusion" / self.kit.checkpoint

    @property
    def extension_dir(self) -> Path:
        return self.webui / "extensions" / EXTENSION_NAME

    @property
    def alignment_dir(self) -> Path:
        return self.webui / "outputs" / "alignment"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def start_log_offset(self) -> int:
        return len(self.log_text())

    def start(self, extra_args: str | None = None) -> float:
        """Start through the kit's start.sh and wait until it can generate; returns the seconds taken."""
        if extra_args is not None:
            self.extra_args = extra_args
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.start_log_offset()
        log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - the child keeps it
        log.write(f"\n===== real-host start {self.starts + 1} (EXTRA_ARGS={self.extra_args!r}) =====\n")
        log.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST"))}
        env.update(PORT=str(self.port), EXTRA_ARGS=self.extra_args)
        t0 = time.time()
        self.proc = subprocess.Popen(
            [str(self.dir / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.starts += 1
        deadline = t0 + self.kit.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kit.kind} exited with {self.proc.returncode}:\n{self.log_text()[offset:][-4000:]}")
            log = self.log_text()[offset:]
            if all(line in log for line in self.kit.ready_lines) and self._answers():
                return time.time() - t0
            if time.time() > deadline:
                raise RuntimeError(f"{self.kit.kind} not ready in {self.kit.start_timeout:.0f}s:\n{self.log_text()[offset:][-4000:]}")
            time.sleep(1)

    def _answers(self) -> bool:
        try:
            return self.get("/sdapi/v1/sd-models", timeout=5).status_code == 200
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, extra_args: str | None = None) -> float:
        self.stop()
        return self.start(extra_args)

    # --- HTTP -------------------------------------------------------------------------------

    def request(self, method: str, path: str, auth: Any = "default", timeout: float = 300, **kwargs: Any) -> Any:
        import httpx

        if auth == "default":
            auth = (API_USER, API_PASSWORD) if "--api-auth" in self.extra_args else None
        return httpx.request(method, self.url + path, auth=auth, timeout=timeout, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def txt2img(self, prompt: str, seed: int = 1, steps: int = 4, size: int = 64, **extra: Any) -> Any:
        """The WebUI's own /sdapi/v1/txt2img; returns the first image's RGB pixels as a numpy array."""
        body = {
            "prompt": prompt,
            "seed": seed,
            "steps": steps,
            "width": size,
            "height": size,
            "sampler_name": "Euler",
            "scheduler": "Automatic",
            "cfg_scale": 7,
            **extra,
        }
        response = self.post("/sdapi/v1/txt2img", json=body)
        assert response.status_code == 200, response.text[:2000]
        return decode_image(response.json()["images"][0])

    def generate_cli(self, out: Path, prompt: str = "a red circle") -> Any:
        """`python -m lib_alignment generate` on the WebUI's checkpoint, with the WebUI's Python, from the
        installed extension's folder (as a job runs); returns the image's RGB pixels as a numpy array."""
        import numpy as np
        from PIL import Image

        run = subprocess.run(
            [
                str(self.python), "-m", "lib_alignment", "generate", "--model", str(self.checkpoint),
                "--prompt", prompt, "--steps", "2", "--size", "64", "--out", str(out),
            ],
            cwd=self.extension_dir, capture_output=True, text=True, timeout=900,
            env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        with Image.open(out) as image:
            return np.asarray(image.convert("RGB")).astype(int)

    def start_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /alignment/v1/jobs; the new job's body (fails the test with the answer otherwise)."""
        response = self.post("/alignment/v1/jobs", json=body)
        assert response.status_code == 200, response.text[:3000]
        return response.json()

    def refine(self, prompt: str, seed: int = 21, steps: int = 4, m: int = 4) -> dict[str, Any]:
        """Start a Rank & Refine session at 64x64 with Euler; its first round."""
        response = self.post(
            "/alignment/v1/refine",
            json={"prompt": prompt, "seed": seed, "steps": steps, "width": 64, "height": 64, "m": m, "sampler_name": "Euler"},
        )
        assert response.status_code == 200, response.text[:2000]
        return response.json()

    def poll_job(self, job_id: str, done: Any = None, timeout: float = 600) -> dict[str, Any]:
        """GET the job until `done(body)` (default: a final state); its body."""
        done = done or (lambda body: body["state"] not in ("queued", "running", "cancelling"))
        deadline = time.time() + timeout
        while True:
            body = self.get(f"/alignment/v1/jobs/{job_id}", params={"log": 40}).json()
            if done(body):
                return body
            if time.time() > deadline:
                raise AssertionError(f"job {job_id} still {body.get('state')} after {timeout:.0f}s: {body}")
            time.sleep(1)


def tracebacks_naming_the_extension(log: str) -> list[str]:
    """Every traceback in a WebUI log that passes through this extension's code."""
    blocks = re.findall(r"Traceback \(most recent call last\):.*?(?=\n\S|\Z)", log, flags=re.S)
    return [block for block in blocks if EXTENSION_NAME in block or "lib_alignment" in block]


def decode_image(b64: str) -> Any:
    import numpy as np
    from PIL import Image

    if "," in b64[:64]:
        b64 = b64.split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def installed_versions(python: Path) -> dict[str, str]:
    """canonical name → version of every distribution in a venv, as its own interpreter sees them."""
    script = (
        "import importlib.metadata as m, json, re\n"
        "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
        " for d in m.distributions() if d.metadata['Name']}))"
    )
    import json

    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def host_pins(webui: Path) -> dict[str, str]:
    """The `==` pins of the WebUI's requirements_versions.txt (canonical name → version)."""
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in (webui / "requirements_versions.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def unmet_pins(pins: dict[str, str], versions: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """Pins whose installed version differs (compared as versions: 0.15 is 0.15.0)."""
    from packaging.version import Version

    return {
        name: (pin, versions.get(name))
        for name, pin in pins.items()
        if versions.get(name) is None or Version(versions[name]) != Version(pin)
    }

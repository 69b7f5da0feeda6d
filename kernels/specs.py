"""The kernelspecs this server offers, written where only it looks.

Kernels run from their own Python environment (``kernel_env``), not the server's: the server's
environment may be unreadable to the unprivileged uid that runs candidate code, and it holds
packages candidate code has no business importing. Each spec gets an absolute ``argv`` into
that environment and ``interrupt_mode: message`` (a SIGINT to a sandboxed kernel's process
group would hit the sandbox itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Room language -> (kernelspec name, display name, module that runs the kernel)
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "python": ("python3", "Python 3", "ipykernel_launcher"),
    "bash": ("bash", "Bash", "bash_kernel"),
}


@dataclass(frozen=True, slots=True)
class KernelSpecs:
    """Writes one kernelspec folder per enabled language under ``root``."""

    root: Path
    kernel_env: Path
    enabled: tuple[str, ...]

    def write(self) -> Path:
        python = self.kernel_env / "bin" / "python"
        if not python.exists():
            raise RuntimeError(
                f"kernel environment missing: {python} (build it with `make kernel-env`)"
            )
        for language in self.enabled:
            name, display, module = LANGUAGES[language]
            folder = self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            spec = {
                "argv": [str(python), "-m", module, "-f", "{connection_file}"],
                "display_name": display,
                "language": language,
                "interrupt_mode": "message",
            }
            (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
        return self.root

    def name_for(self, language: str) -> str:
        if language not in self.enabled:
            raise KeyError(language)
        return LANGUAGES[language][0]

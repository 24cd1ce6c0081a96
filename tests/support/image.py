"""The runtime's container image, built for the image and Kubernetes tests."""

from __future__ import annotations

import subprocess

from tests.support.processes import ROOT


def build_image(tag: str) -> str:
    """Build the runtime's image with scripts/build-image.sh (podman); its name."""
    built = subprocess.run(
        [str(ROOT / "scripts/build-image.sh"), tag], capture_output=True, text=True, timeout=1200
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return f"localhost/cos-ray:{tag}"

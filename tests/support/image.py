"""pixhook's container image without a Docker engine: buildah builds the Dockerfile as it is on
a stand-in for the official `python:3.11-slim-bookworm` base, made from Debian's own packages
with mmdebstrap and kept between runs, and runs its roles in chroot-isolated containers that
share this machine's loopback. `make image` runs this module; tests/test_image.py uses it.

Run as root (or with rootless buildah and mmdebstrap set up); both are Debian packages."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/pixhook-python:3.11-bookworm"
IMAGE = "localhost/pixhook:local"
# What the official image sets, sbin included: the Dockerfile's `groupadd` lives there.
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
BASE_PACKAGES = "python3,python3-venv,ca-certificates,passwd"
# pip in the build reaches the package index the way this machine does (a proxy's CA, an index
# mirror): the host's CA bundle and pip configuration go into the stand-in, where present.
HOST_CONFIG = (
    Path("/etc/ssl/certs/ca-certificates.crt"),
    Path("/etc/pip.conf"),
    Path("/etc/xdg/pip"),
)
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
MB = 1_000_000


class ImageError(Exception):
    """buildah or mmdebstrap failed; the message ends with what it printed."""


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{output}")
    return result.stdout.strip()


def buildah(*args: str) -> str:
    return _run(["buildah", *args], f"buildah {args[0]}")


def has_image(name: str) -> bool:
    inspect = ["buildah", "inspect", "--type", "image", name]
    return subprocess.run(inspect, capture_output=True, check=False).returncode == 0


def build_base() -> None:
    """The stand-in base, unless it is there already (about 30 s the first time)."""
    if has_image(BASE):
        return
    sources = next((path for path in APT_SOURCES if path.exists()), None)
    if sources is None:
        raise ImageError(
            f"no apt sources for mmdebstrap: looked for {', '.join(map(str, APT_SOURCES))}"
        )
    hooks = ['ln -sf python3 "$1/usr/bin/python"']
    for path in HOST_CONFIG:
        if path.exists():
            hooks.append(f'mkdir -p "$1{path.parent}" && cp -rL {path} "$1{path}"')
    with tempfile.TemporaryDirectory(prefix="pixhook-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                *(f"--customize-hook={hook}" for hook in hooks),
                "bookworm",
                str(tarball),
                str(sources),
            ],
            "mmdebstrap",
        )
        container = buildah("from", "scratch")
        try:
            buildah("add", container, str(tarball), "/")
            env = [arg for pair in BASE_ENV for arg in ("--env", pair)]
            buildah("config", *env, "--cmd", "python3", container)
            buildah("commit", "--quiet", container, BASE)
        finally:
            buildah("rm", container)


def build_image(tag: str = IMAGE) -> None:
    """The Dockerfile, unchanged, on the stand-in base."""
    build_base()
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--build-arg",
        f"PYTHON_IMAGE={BASE}",
        "--tag",
        tag,
        str(ROOT),
    )
    # The image a rebuild untagged, and the builder stage: a build per test run would pile
    # them up. The layers they would have cached all follow `COPY service`, rebuilt anyway.
    buildah("rmi", "--prune")


def image_size_text(name: str) -> str:
    """The size buildah reports for an image, as it prints it ("323 MB")."""
    return buildah("images", "--format", "{{.Size}}", name).splitlines()[0]


def tree_bytes(path: Path) -> int:
    return sum(item.lstat().st_size for item in path.rglob("*") if not item.is_dir())


@dataclass(frozen=True)
class Sizes:
    image: str
    base: str
    venv_bytes: int

    def __str__(self) -> str:
        return f"image {self.image} on a {self.base} base; venv {self.venv_bytes / MB:.1f} MB"


class Container:
    """One working container of an image; its processes run chroot-isolated on the host's
    network, as the image's user unless told otherwise."""

    def __init__(self, image: str = IMAGE, role: str = "pixhook") -> None:
        self.name = buildah("from", "--name", f"{role}-{uuid.uuid4().hex[:8]}", image)
        self.root = Path(buildah("mount", self.name))

    def command(
        self,
        *argv: str,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[Path, str] | None = None,
        user: str | None = None,
    ) -> list[str]:
        """The `buildah run` command line that runs argv in this container, as the image's user
        unless `user` ("uid:gid") says otherwise."""
        options = ["--isolation", "chroot", *(["--user", user] if user else [])]
        for key, value in (env or {}).items():
            options += ["--env", f"{key}={value}"]
        for host, inside in (volumes or {}).items():
            options += ["--volume", f"{host}:{inside}"]
        return ["buildah", "run", *options, self.name, "--", *argv]

    def run(
        self, *argv: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv, env=env), capture_output=True, text=True, timeout=120, check=False
        )

    def remove(self) -> None:
        buildah("umount", self.name)
        buildah("rm", self.name)


def sizes(image: str = IMAGE) -> Sizes:
    container = Container(image, "sizes")
    try:
        venv = tree_bytes(container.root / "opt" / "venv")
    finally:
        container.remove()
    return Sizes(image_size_text(image), image_size_text(BASE), venv)


def main() -> None:
    try:
        build_image()
        print(f"{IMAGE}: {sizes()}")
    except ImageError as exc:
        sys.exit(f"make image: {exc}")


if __name__ == "__main__":
    main()

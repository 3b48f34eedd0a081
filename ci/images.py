"""Build the project's container images without a registry, cached by content hash.

Each image is tagged with a hash of everything that defines it (the bootstrap command for the base image;
the parent tag, Dockerfile and build context for the others), so a second run finds the tag and skips the
build. Debian package versions inside an image are whatever the mirror served when it was built; delete
the image (``docker rmi``) to force a rebuild.

Usage: ``python ci/images.py NAME`` (base, slurm, task, slurm-sid, slurm-trixie, slurm-campus, gridengine,
torque-wrappers, ssh-login, or all) prints each image's tag, whether it was cached, and how long it took.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CI_DIR = Path(__file__).resolve().parent
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
BASE_REPO = "metasched/base"
BASE_ARGV_TEMPLATE = (
    "mmdebstrap",
    "--variant=minbase",
    "--include=ca-certificates",
    "--quiet",
    SUITE,
    "{tar}",
    MIRROR,
)
BUILD_TIMEOUT_S = 1800
# CRIU 4.2 from sid, unpacked with its libraries (bookworm's 3.17 fails on this kernel, and 4.2 needs a
# newer glibc than bookworm's: it runs through the unpacked tree's own dynamic loader).
CRIU_REPO = "metasched/criu"
CRIU_ARGV_TEMPLATE = (
    "mmdebstrap",
    "--variant=extract",
    "--include=criu",
    "--aptopt=Acquire::Check-Valid-Until \"false\"",
    "--quiet",
    "sid",
    "{tar}",
    MIRROR,
)


# Slurm 26.05 and Apptainer 1.4.5 from sid (Apptainer needs sid's glibc): the image of Apptainer sites.
# (openssh-server too: apt cannot run in a Dockerfile FROM it, so ci/ssh-login finds sshd already there.)
SID_SLURM_ARGV_TEMPLATE = (
    "mmdebstrap",
    "--variant=minbase",
    "--include=ca-certificates,slurmctld,slurmd,slurm-client,munge,python3,procps,apptainer,squashfs-tools,"
    "squashfuse,fuse2fs,openssh-server",
    "--aptopt=Acquire::Check-Valid-Until \"false\"",
    "--quiet",
    "sid",
    "{tar}",
    MIRROR,
)


# Slurm 24.11 with slurmdbd and MariaDB from trixie: the site row that exercises accounting (sacct).
TRIXIE_SLURM_ARGV_TEMPLATE = (
    "mmdebstrap",
    "--variant=minbase",
    "--include=ca-certificates,slurmctld,slurmd,slurmdbd,slurm-client,munge,mariadb-server,python3,procps",
    "--quiet",
    "trixie",
    "{tar}",
    MIRROR,
)


class ImageBuildError(RuntimeError):
    """An image could not be built; the message carries the failing command's output tail."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltImage:
    """The outcome of ensuring one image exists."""

    tag: str
    cached: bool
    seconds: float


def _run(argv: list[str], *, timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise ImageBuildError(f"{' '.join(argv[:3])} ... failed (exit {proc.returncode}):\n{tail}")
    return proc


def image_exists(tag: str) -> bool:
    """Return True if the local Docker engine has an image with this tag."""
    proc = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, text=True, timeout=60, check=False
    )
    return proc.returncode == 0


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def context_digest(context: Path, *extra: str) -> str:
    """Hash every file under a build context (path and content) plus extra strings."""
    parts: list[bytes] = [e.encode() for e in extra]
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        parts.append(str(path.relative_to(context)).encode())
        parts.append(path.read_bytes())
    return _digest(*parts)


def base_tag() -> str:
    """The tag of the Debian base image for the current bootstrap definition."""
    return f"{BASE_REPO}:{SUITE}-{_digest(' '.join(BASE_ARGV_TEMPLATE).encode())}"


def ensure_base() -> BuiltImage:
    """Bootstrap a minimal Debian with mmdebstrap and import it, unless already present."""
    return _ensure_imported(base_tag(), BASE_ARGV_TEMPLATE, min_bytes=50_000_000)


def ensure_criu() -> BuiltImage:
    """Unpack sid's criu package and its libraries into an image (files only), unless already present."""
    tag = f"{CRIU_REPO}:sid-{_digest(' '.join(CRIU_ARGV_TEMPLATE).encode())}"
    return _ensure_imported(tag, CRIU_ARGV_TEMPLATE, min_bytes=10_000_000)


def _ensure_imported(tag: str, argv_template: tuple[str, ...], *, min_bytes: int) -> BuiltImage:
    """Run an mmdebstrap command that writes {tar}, and `docker import` the tar as `tag`, unless cached."""
    start = time.monotonic()
    if image_exists(tag):
        return BuiltImage(tag=tag, cached=True, seconds=time.monotonic() - start)
    with tempfile.TemporaryDirectory(prefix="metasched-image-") as tmp:
        # Write to a file first: piping into `docker import` turns a failed bootstrap into an empty image.
        tar = Path(tmp) / "rootfs.tar"
        _run([arg.format(tar=tar) for arg in argv_template])
        if tar.stat().st_size < min_bytes:
            raise ImageBuildError(f"mmdebstrap produced a suspiciously small {tar} ({tar.stat().st_size} B)")
        _run(["docker", "import", str(tar), tag])
    return BuiltImage(tag=tag, cached=False, seconds=time.monotonic() - start)


def ensure_image(repo: str, context: Path, parent: str, *, dockerfile: str = "Dockerfile",
                 **build_args: str) -> BuiltImage:
    """Build ``context``'s `dockerfile` FROM ``parent`` (build arg BASE, plus `build_args`), unless cached."""
    extra = [f"{k}={v}" for k, v in sorted(build_args.items())]
    tag = f"{repo}:{context_digest(context, parent, dockerfile, *extra)}"
    start = time.monotonic()
    if image_exists(tag):
        return BuiltImage(tag=tag, cached=True, seconds=time.monotonic() - start)
    argv = ["docker", "build", "--network", "host", "--file", str(context / dockerfile),
            "--build-arg", f"BASE={parent}"]
    for arg in extra:
        argv += ["--build-arg", arg]
    _run([*argv, "--tag", tag, str(context)])
    return BuiltImage(tag=tag, cached=False, seconds=time.monotonic() - start)


def ensure_slurm() -> BuiltImage:
    """Ensure the base and CRIU images and the Slurm image built FROM them exist."""
    base = ensure_base()
    _report("base", base)
    criu = ensure_criu()
    _report("criu", criu)
    return ensure_image("metasched/slurm", CI_DIR / "slurm-cluster" / "image", base.tag, CRIU=criu.tag)


def ensure_slurm_sid() -> BuiltImage:
    """The sid Slurm image: the packages come with the bootstrap; the Dockerfile adds the entrypoint."""
    root = _ensure_imported(f"metasched/sid-slurm-root:{_digest(' '.join(SID_SLURM_ARGV_TEMPLATE).encode())}",
                            SID_SLURM_ARGV_TEMPLATE, min_bytes=100_000_000)
    _report("sid root", root)
    return ensure_image("metasched/slurm-sid", CI_DIR / "slurm-cluster" / "image", root.tag,
                        dockerfile="Dockerfile.sid")


def ensure_slurm_trixie() -> BuiltImage:
    """The Slurm 24.11 image with slurmdbd + MariaDB (trixie), plus bookworm's Python 3.11 for the worker."""
    digest = _digest(" ".join(TRIXIE_SLURM_ARGV_TEMPLATE).encode())
    root = _ensure_imported(f"metasched/trixie-slurm-root:{digest}", TRIXIE_SLURM_ARGV_TEMPLATE,
                            min_bytes=100_000_000)
    _report("trixie root", root)
    return ensure_image("metasched/slurm-trixie", CI_DIR / "slurm-cluster" / "image-2411", root.tag,
                        PY311=ensure_slurm().tag, BOOKWORM=ensure_base().tag)


def ensure_torque_wrappers() -> BuiltImage:
    """The Slurm image plus Debian's Torque-style wrappers (slurm-wlm-torque): the Torque test site."""
    return ensure_image("metasched/torque-wrappers", CI_DIR / "torque-wrappers" / "image", ensure_slurm().tag)


def ensure_ssh_login(parent: str = "") -> BuiltImage:
    """A site image (default the Slurm one) plus OpenSSH's server (ci/ssh-login): an SSH test site's."""
    return ensure_image("metasched/ssh-login", CI_DIR / "ssh-login" / "image", parent or ensure_slurm().tag)


def ensure_slurm_campus() -> BuiltImage:
    """The campus site's image (ci/slurm-campus): the Slurm image's packages, its own configuration, munge
    key and users (a cluster metasched did not build)."""
    return ensure_image("metasched/slurm-campus", CI_DIR / "slurm-campus" / "image", ensure_slurm().tag)


def ensure_gridengine() -> BuiltImage:
    """The Grid Engine 8.1.9 image (bookworm's packages) built FROM the base image."""
    base = ensure_base()
    return ensure_image("metasched/gridengine", CI_DIR / "gridengine" / "image", base.tag)


TASK_CONTEXT = CI_DIR.parent / "containers" / "task"
TASK_REPO = "metasched/task"


TASK_ALIAS = f"{TASK_REPO}:latest"


def ensure_task() -> BuiltImage:
    """The test image for container tasks (containers/task), built FROM the base image.

    Also tagged ``metasched/task:latest`` (the name examples/containers.toml uses).
    """
    built = ensure_image(TASK_REPO, TASK_CONTEXT, ensure_base().tag)
    _run(["docker", "tag", built.tag, TASK_ALIAS], timeout=60)
    return built


def ensure_sif(docker_tag: str, directory: Path) -> BuiltImage:
    """An Apptainer SIF of a Docker image, built from its `docker save` archive (no registry), cached.

    The SIF is ``<directory>/<repo>-<tag>.sif``; the build runs ``apptainer build`` in a throw-away
    container of the sid Slurm image (Apptainer needs sid's glibc), with /dev/fuse and SYS_ADMIN.
    """
    start = time.monotonic()
    sif = directory / (docker_tag.replace("/", "-").replace(":", "-") + ".sif")
    if sif.exists():
        return BuiltImage(tag=str(sif), cached=True, seconds=time.monotonic() - start)
    builder = ensure_slurm_sid().tag
    directory.mkdir(parents=True, exist_ok=True)
    archive = sif.with_suffix(".tar")
    partial = sif.with_suffix(".sif.partial")
    try:
        _run(["docker", "save", docker_tag, "--output", str(archive)])
        _run(["docker", "run", "--rm", "--network", "host", "--security-opt", "seccomp=unconfined",
              "--cap-add", "SYS_ADMIN", "--device", "/dev/fuse", "--volume", f"{directory}:{directory}",
              "--entrypoint", "apptainer", builder, "--quiet", "build", "--force", str(partial),
              f"docker-archive://{archive}"])
        partial.rename(sif)
    finally:
        archive.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return BuiltImage(tag=str(sif), cached=False, seconds=time.monotonic() - start)


def _report(name: str, built: BuiltImage) -> None:
    how = "cached" if built.cached else "built"
    print(f"image {name}: {built.tag} {how} in {built.seconds:.1f} s", flush=True)


def main(argv: list[str]) -> int:
    """Entry point: build the named images (default: all)."""
    what = argv[0] if argv else "all"
    try:
        if what == "base":
            _report("base", ensure_base())
        elif what == "slurm":
            _report("slurm", ensure_slurm())
        elif what == "task":
            _report("task", ensure_task())
        elif what == "slurm-sid":
            _report("slurm-sid", ensure_slurm_sid())
        elif what == "gridengine":
            _report("gridengine", ensure_gridengine())
        elif what == "slurm-trixie":
            _report("slurm-trixie", ensure_slurm_trixie())
        elif what == "torque-wrappers":
            _report("torque-wrappers", ensure_torque_wrappers())
        elif what == "slurm-campus":
            _report("slurm-campus", ensure_slurm_campus())
        elif what == "ssh-login":
            _report("ssh-login", ensure_ssh_login())
        elif what == "all":
            _report("slurm", ensure_slurm())
            _report("task", ensure_task())
            _report("slurm-sid", ensure_slurm_sid())
            _report("gridengine", ensure_gridengine())
            _report("torque-wrappers", ensure_torque_wrappers())
            _report("slurm-trixie", ensure_slurm_trixie())
            _report("slurm-campus", ensure_slurm_campus())
            _report("ssh-login", ensure_ssh_login())
        else:
            print("usage: images.py base|slurm|task|slurm-sid|slurm-trixie|slurm-campus|gridengine|"
                  f"torque-wrappers|ssh-login|all (got {what!r})", file=sys.stderr)
            return 2
    except ImageBuildError as exc:
        print(f"image build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

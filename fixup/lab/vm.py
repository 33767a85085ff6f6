"""Boot Debian's kernel (which has PPP, unlike many hosts) over this machine's root with virtme-ng
and run one command in it: the runner of the interop tier (an I/O tool).

``vng --disable-kvm`` (qemu TCG; KVM guests hang on some hosts) shares the host root read-only
over 9p with tmpfs overlays on /etc, /var, /tmp ...; results come back through ``--rwdir``.
Every boot holds ``/tmp/fixup-netns.lock`` (the netns tests of other runs use it too).

    python -m fixup.lab.vm --rwdir DIR [--timeout 590] -- COMMAND ...
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOCK = "/tmp/fixup-netns.lock"
DEFAULT_TIMEOUT = 590.0


def venv_bin() -> Path:
    """The directory of the running interpreter's scripts (vng calls ``virtme-run`` via PATH)."""
    return Path(sys.executable).parent


def find_kernel() -> Path | None:
    """The newest /boot/vmlinuz-* (Debian's linux-image-amd64), or None."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    return kernels[-1] if kernels else None


def find_vng() -> str | None:
    local = venv_bin() / "vng"
    return str(local) if local.exists() else shutil.which("vng")


def unavailable_reason() -> str | None:
    """Why no VM can boot here, or None when vng, a kernel, qemu and a static busybox are present."""
    if find_vng() is None:
        return "virtme-ng (vng) is not installed: make setup"
    if find_kernel() is None:
        return "no /boot/vmlinuz-* kernel: make setup (apt linux-image-amd64)"
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is missing: make setup (apt qemu-system-x86)"
    if not any(Path(p).exists() for p in ("/bin/busybox", "/usr/bin/busybox")):
        return "busybox-static is missing: make setup"
    if os.geteuid() != 0:
        return "the interop VM needs root (network namespaces, PPP in the guest)"
    return None


def vng_command(command: Sequence[str], rwdir: Path, *, kernel: Path, memory: str = "2G",
                cpus: int = 2, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The full host command line: flock, timeout, then vng with TCG."""
    vng = find_vng() or "vng"
    return ["flock", LOCK, "timeout", "-k", "15", str(int(timeout)), vng, "--disable-kvm", "-r", str(kernel),
            "--memory", memory, "--cpus", str(cpus), f"--rwdir={rwdir}", "--exec", shlex.join(command)]


def follow(path: Path, stop: threading.Event, emit: Callable[[str], None]) -> None:
    """Pass every new line of ``path`` to ``emit`` until ``stop`` is set (progress of the guest)."""
    position = 0
    while True:
        finished = stop.is_set()
        if path.exists():
            with path.open("r", errors="replace") as f:
                f.seek(position)
                while line := f.readline():
                    if not line.endswith("\n") and not finished:
                        break
                    position += len(line.encode())
                    emit(line.rstrip("\n"))
        if finished:
            return
        time.sleep(0.5)


def run_in_vm(command: Sequence[str], rwdir: Path, *, progress: Path | None = None,
              emit: Callable[[str], None] = print, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Boot, run ``command`` in the guest, return its exit status (124: timed out).

    vng's stdout and stderr go to two files in ``rwdir`` (one shared file garbles: qemu opens
    both descriptors separately); ``progress`` (a file the guest writes) is echoed line by line."""
    kernel = find_kernel()
    if kernel is None:
        raise FileNotFoundError("no /boot/vmlinuz-*")
    rwdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PATH=f"{venv_bin()}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}")
    stop = threading.Event()
    watcher = threading.Thread(target=follow, args=(progress, stop, emit), daemon=True) if progress else None
    if watcher:
        watcher.start()
    try:
        with (rwdir / "vng-stdout.txt").open("wb") as out, (rwdir / "vng-stderr.txt").open("wb") as err:
            done = subprocess.run(vng_command(command, rwdir, kernel=kernel, timeout=timeout), env=env,
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        return done.returncode  # `timeout` (started once the lock is held) bounds the boot: 124
    finally:
        stop.set()
        if watcher:
            watcher.join(5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fixup.lab.vm", description=__doc__.splitlines()[0])
    parser.add_argument("--rwdir", type=Path, required=True)
    parser.add_argument("--progress", type=Path)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"vm: cannot boot: {reason}", file=sys.stderr)
        return 2
    return run_in_vm(args.command, args.rwdir, progress=args.progress, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())

"""The few libbpf calls fixup needs, through ctypes: open and load a compiled BPF object with its
maps pinned by name, attach a tc program (clsact) to an interface, and read and write maps.

Written by hand: PyPI has no well-kept binding to libbpf itself (bcc compiles at run time and
needs kernel headers; pyroute2 attaches a program fd to tc but cannot load an object file or
pin maps).  libbpf (Debian ``libbpf1``, ``libbpf.so.1``) does the ELF parsing, BTF, relocation
and pinning; the struct layouts below are libbpf 1.x's public ``*_opts`` with ``sz`` set, so a
newer libbpf reads them as written.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator

from fixup.errors import SetupError

BPF_TC_INGRESS = 1
BPF_TC_F_REPLACE = 1
BPF_ANY = 0


class _OpenOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("object_name", ctypes.c_char_p), ("relaxed_maps", ctypes.c_bool),
                ("pin_root_path", ctypes.c_char_p)]


class _TcHook(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int), ("attach_point", ctypes.c_int),
                ("parent", ctypes.c_uint32)]


class _TcOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int), ("flags", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("handle", ctypes.c_uint32), ("priority", ctypes.c_uint32)]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


_LIB: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libbpf, loaded once; SetupError (with the reason) when it is not there."""
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as err:
            raise SetupError(f"libbpf is not installed ({err}); Debian package libbpf1") from err
        lib.bpf_object__open_file.restype = ctypes.c_void_p
        lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.POINTER(_OpenOpts)]
        lib.bpf_object__load.argtypes = [ctypes.c_void_p]
        lib.bpf_object__close.argtypes = [ctypes.c_void_p]
        lib.bpf_object__find_program_by_name.restype = ctypes.c_void_p
        lib.bpf_object__find_program_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
        lib.bpf_object__find_map_fd_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]
        lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]
        for name in ("bpf_map_lookup_elem", "bpf_map_get_next_key"):
            getattr(lib, name).argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.bpf_tc_hook_create.argtypes = [ctypes.POINTER(_TcHook)]
        lib.bpf_tc_hook_destroy.argtypes = [ctypes.POINTER(_TcHook)]
        lib.bpf_tc_attach.argtypes = [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)]
        lib.bpf_tc_detach.argtypes = [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)]
        lib.libbpf_num_possible_cpus.argtypes = []
        lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
        lib.libbpf_set_print.argtypes = [ctypes.c_void_p]
        lib.libbpf_set_print.restype = ctypes.c_void_p
        lib.libbpf_set_print(None)  # its warnings would go to stderr; fixup reports what fails itself
        _LIB = lib
    return _LIB


def _failed(what: str, rc: int | None = None) -> SetupError:
    errno = -rc if rc is not None and rc < 0 else ctypes.get_errno()
    return SetupError(f"{what}: {os.strerror(errno) if errno else 'failed'}")


class BpfObject:
    """A loaded BPF object: its programs' and maps' file descriptors, maps pinned under
    ``pin_dir`` (an existing pin of the same name and shape is reused, which is how a restarted
    daemon takes over the maps the running program uses)."""

    def __init__(self, path: str, pin_dir: str) -> None:
        lib = library()
        opts = _OpenOpts(sz=ctypes.sizeof(_OpenOpts), pin_root_path=pin_dir.encode())
        handle = lib.bpf_object__open_file(path.encode(), ctypes.byref(opts))
        if not handle:
            raise _failed(f"cannot open the BPF object {path}")
        rc = lib.bpf_object__load(ctypes.c_void_p(handle))
        if rc:
            lib.bpf_object__close(ctypes.c_void_p(handle))
            raise _failed(f"the kernel refused the BPF object {path}", rc)
        self._lib, self._handle = lib, handle

    def program_fd(self, name: str) -> int:
        program = self._lib.bpf_object__find_program_by_name(ctypes.c_void_p(self._handle), name.encode())
        if not program:
            raise SetupError(f"BPF program {name} not in the object")
        return int(self._lib.bpf_program__fd(ctypes.c_void_p(program)))

    def map_fd(self, name: str) -> int:
        fd = int(self._lib.bpf_object__find_map_fd_by_name(ctypes.c_void_p(self._handle), name.encode()))
        if fd < 0:
            raise SetupError(f"BPF map {name} not in the object")
        return fd

    def close(self) -> None:
        """The object's fds; pinned maps and attached programs stay in the kernel."""
        if self._handle:
            self._lib.bpf_object__close(ctypes.c_void_p(self._handle))
            self._handle = None


class BpfMap:
    """One map by fd, keys and values as bytes (per-CPU values: one slot per possible CPU)."""

    def __init__(self, fd: int, key_size: int, value_size: int, per_cpu: bool = False) -> None:
        self.fd, self.key_size, self.value_size = fd, key_size, value_size
        self.slots = possible_cpus() if per_cpu else 1
        self.stride = (value_size + 7) // 8 * 8 if per_cpu else value_size
        self._lib = library()

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        raw = value if self.slots == 1 else b"".join(value.ljust(self.stride, b"\0") for _ in range(self.slots))
        rc = self._lib.bpf_map_update_elem(self.fd, key, raw, flags)
        if rc:
            raise _failed("BPF map update", rc)

    def delete(self, key: bytes) -> bool:
        return self._lib.bpf_map_delete_elem(self.fd, key) == 0

    def lookup(self, key: bytes) -> list[bytes] | None:
        """The value (per CPU: one per possible CPU), None when absent."""
        out = ctypes.create_string_buffer(self.stride * self.slots)
        if self._lib.bpf_map_lookup_elem(self.fd, key, out) != 0:
            return None
        raw = out.raw
        return [raw[i * self.stride:i * self.stride + self.value_size] for i in range(self.slots)]

    def keys(self) -> Iterator[bytes]:
        current: bytes | None = None
        following = ctypes.create_string_buffer(self.key_size)
        while self._lib.bpf_map_get_next_key(self.fd, current, following) == 0:
            current = following.raw
            yield current


def attach_tc(ifindex: int, prog_fd: int, handle: int, priority: int) -> None:
    """The program on ``ifindex``'s tc ingress (clsact created when missing), replacing ours if
    there (same handle and priority): no packet ever meets no program."""
    lib = library()
    hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=BPF_TC_INGRESS)
    rc = lib.bpf_tc_hook_create(ctypes.byref(hook))
    if rc and rc != -17:  # EEXIST: someone (an earlier fixup, or another tool) made it
        raise _failed(f"cannot create the clsact qdisc on interface {ifindex}", rc)
    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), prog_fd=prog_fd, flags=BPF_TC_F_REPLACE, handle=handle, priority=priority)
    rc = lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    if rc:
        raise _failed(f"cannot attach the BPF program to interface {ifindex}", rc)


def detach_tc(ifindex: int, handle: int, priority: int) -> None:
    """Our filter off ``ifindex`` (absent is fine); the clsact qdisc stays for other users."""
    lib = library()
    hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=BPF_TC_INGRESS)
    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=handle, priority=priority)
    lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))


def test_run(prog_fd: int, packet: bytes, ctx: bytes = b"", repeat: int = 1) -> tuple[int, bytes, int]:
    """``BPF_PROG_TEST_RUN``: the program on one packet in the caller's network namespace;
    (return value, the packet as the program left it, mean nanoseconds per run)."""
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(len(packet) + 256)
    ctx_in = ctypes.create_string_buffer(ctx, len(ctx)) if ctx else None
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.cast(data_in, ctypes.c_void_p),
                        data_out=ctypes.cast(data_out, ctypes.c_void_p), data_size_in=len(packet),
                        data_size_out=len(data_out), repeat=repeat)
    if ctx_in is not None:
        opts.ctx_in, opts.ctx_size_in = ctypes.cast(ctx_in, ctypes.c_void_p), len(ctx)
    rc = library().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if rc:
        raise _failed("BPF_PROG_TEST_RUN", rc)
    return opts.retval, data_out.raw[:opts.data_size_out], opts.duration


def possible_cpus() -> int:
    rc = int(library().libbpf_num_possible_cpus())
    if rc <= 0:
        raise SetupError("cannot tell how many CPUs this host may have")
    return rc

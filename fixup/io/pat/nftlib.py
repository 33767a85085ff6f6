"""nftables commands in-process through libnftables (ctypes), with ``nft -f -`` as fallback.

Programming a call's GRE translation must be done before the verdict on the control segment
that opened it, so it must be fast: libnftables takes a fraction of a millisecond where
starting ``nft`` takes several.
"""
from __future__ import annotations

import ctypes
import json
import logging
import subprocess
from typing import Any

from fixup.errors import SetupError

log = logging.getLogger("fixup.nft")

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4


class Nft:
    """Runs nft command text in this process's network namespace."""

    def __init__(self, library: str = "libnftables.so.1") -> None:
        self._lib: Any = None
        self._ctx: int | None = None
        try:
            lib = ctypes.CDLL(library)
        except OSError as err:
            log.warning("fixup: %s not loadable (%s); falling back to the nft command (slower)", library, err)
            return
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        self._lib, self._ctx = lib, ctx

    def run(self, commands: str, *, json_output: bool = False) -> str:
        """Run ``commands`` (one batch, all or nothing); return the output.  SetupError on failure."""
        if self._lib is None:
            return self._run_binary(commands, json_output)
        self._lib.nft_ctx_output_set_flags(self._ctx, NFT_CTX_OUTPUT_JSON if json_output else 0)
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
        output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            raise SetupError(f"nft: {error.strip().splitlines()[0] if error.strip() else f'error {rc}'}")
        return output

    def run_json(self, commands: str) -> list[dict[str, Any]]:
        """The ``nftables`` list of a JSON listing."""
        text = self.run(commands, json_output=True)
        return json.loads(text).get("nftables", []) if text.strip() else []

    def close(self) -> None:
        if self._lib is not None and self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None
            self._lib = None

    @staticmethod
    def _run_binary(commands: str, json_output: bool) -> str:
        argv = ["nft", *(["-j"] if json_output else []), "-f", "-"]
        done = subprocess.run(argv, input=commands, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise SetupError(f"nft: {done.stderr.strip().splitlines()[0] if done.stderr.strip() else done.returncode}")
        return done.stdout

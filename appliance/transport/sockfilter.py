"""Classic BPF socket filters (SO_ATTACH_FILTER): what the kernel should not queue on a socket.

Why a module: a filter is a few raw instructions and a pointer handed to setsockopt, which the
client's address watch (tun/addr_watch.py: no wake-up for an address added) and the WAN DHCP
client (boot/dhcp_client.py only_ours: our transaction, refused sources) attach here.
"""
from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26                  # asm-generic/socket.h (x86_64, arm64)

# Opcodes (linux/filter.h): BPF_LD|BPF_{B,H,W}|BPF_ABS (loads in network byte order),
# BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K.
LD_B, LD_H, LD_W, JEQ, RET = 0x30, 0x28, 0x20, 0x15, 0x06
ACCEPT, DROP = 0xFFFFFFFF, 0           # RET's value: bytes of the packet kept


def attach(s: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
    """Attach the program `insns` ((code, jt, jf, k) each) to `s`; OSError when the kernel
    refuses it. The kernel copies the program, so the buffer may go once this returns."""
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in insns))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("@HP", len(insns), ctypes.addressof(code)))

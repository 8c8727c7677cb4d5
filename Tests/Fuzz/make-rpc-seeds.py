#!/usr/bin/python3
"""Seeds for fuzz-libvirt-rpc from the golden capture: one client stream per
procedure libvirtd's peers were recorded calling (AUTH_LIST, CONNECT_OPEN,
then that procedure with each recorded argument payload), so the fuzzer
starts inside every procedure's argument decoder instead of having to find
the framing first.

    Tests/Fuzz/make-rpc-seeds.py   (rewrites Tests/Fuzz/corpus/fuzz-libvirt-rpc/golden-*)
"""
import os, struct

here = os.path.dirname(os.path.abspath(__file__))
golden = os.path.join(here, "..", "LibvirtRPCTests", "Golden", "libvirtd-9.0-test-driver.txt")
out = os.path.join(here, "corpus", "fuzz-libvirt-rpc")
REMOTE_PROGRAM, VERSION = 0x20008086, 1


def packet(proc, serial, payload):
    body = struct.pack(">IIiiIi", REMOTE_PROGRAM, VERSION, proc, 0, serial, 0) + payload
    return struct.pack(">I", len(body) + 4) + body


def xdr_string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4)


calls = {}
for line in open(golden):
    proc, kind, payload = line.split()
    if kind == "call" and payload != "-":
        calls.setdefault(int(proc), []).append(bytes.fromhex(payload))
    elif kind == "call":
        calls.setdefault(int(proc), []).append(b"")

for name in os.listdir(out):
    if name.startswith("golden-"):
        os.remove(os.path.join(out, name))
# CONNECT_OPEN: optional name (present, "apus:///system"), flags 0.
opening = packet(66, 1, b"") + packet(1, 2, struct.pack(">I", 1) + xdr_string("apus:///system") + struct.pack(">I", 0))
for proc, payloads in sorted(calls.items()):
    if proc in (1, 66):
        continue
    stream = opening + b"".join(packet(proc, 3 + i, p) for i, p in enumerate(payloads))
    with open(os.path.join(out, "golden-%d" % proc), "wb") as f:
        f.write(stream)

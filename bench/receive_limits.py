"""What misbehaving peers make the SCP hold: resident memory and slots under each attack.

Each scenario starts a fresh SCP process (`start_scp`, a real spool in a temporary folder,
listening on 127.0.0.1) and attacks it with raw sockets, then prints the SCP's resident
memory before, at its peak (VmHWM) and after, what the attackers got in, and how long the
SCP took to cut them off:

  huge-pdu      N associations each declare a ~4 GiB P-DATA-TF and stream zeros into it
                (the issue's attack: 2 x 768 MiB took the service from 83 to 1,622 MiB)
  big-instance  N associations each stream one C-STORE data set in max-PDU-sized P-DATA-TFs
                until cut off (at most twice --max-instance)
  silent        --max-associations connections that associate and say nothing: seconds
                until a C-ECHO is answered again
  one-source    50 connections at once from one address: how many the SCP keeps
  storescu      a well-behaved DCMTK storescu sending a 64 MiB instance

`--src DIR` runs the SCP from another checkout (e.g. a `git worktree` of an older commit)
to print the same figures for it; keys that checkout does not know are left out.

    .venv/bin/python bench/receive_limits.py [--attackers 2] [--stream-mib 768]
        [--max-instance-mib 256] [--first-request 10] [--src DIR] [--only huge-pdu,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

import rawpeer  # tests/fuzz is not a package

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"

# The SCP process: configured from argv (JSON), prints its port, runs until stdin closes.
SERVE = """
import json, os, sys, tempfile
from pathlib import Path
from gateway.base.metrics import Metrics
from gateway.config import ListenConfig
from gateway.net.scp import start_scp, stop_scp
from gateway.keys.keyed_hash import KeyedHash
from gateway.stores.spool import Spool
wanted = json.loads(sys.argv[1])
known = {k: v for k, v in wanted.items() if k in ListenConfig.model_fields}
listen = ListenConfig(**known).model_copy(update={"port": 0})
with tempfile.TemporaryDirectory() as folder:
    spool = Spool(Path(folder) / "storage", KeyedHash(os.urandom(32)))
    server = start_scp(listen, spool, Metrics())
    print(server.server_address[1], sorted(set(wanted) - set(known)), flush=True)
    sys.stdin.read()
    stop_scp(server, timeout=5)
    spool.close()
"""


class Scp:
    """An SCP process and its memory figures from /proc."""

    def __init__(self, src: Path, listen: dict[str, object]) -> None:
        import json

        env = dict(os.environ, PYTHONPATH=str(src))
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE, json.dumps(listen)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=src,  # `python -c` puts the working folder first on sys.path
            text=True,
        )
        assert self.process.stdout is not None
        port, _, unknown = self.process.stdout.readline().partition(" ")
        self.port = int(port)
        self.unknown = unknown.strip()
        time.sleep(0.5)
        self.before = self.status("VmRSS")

    def status(self, field: str) -> int:
        """A VmRSS / VmHWM figure of the process, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by its handle
            self.process.wait(timeout=15)


def associate(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(rawpeer.associate_rq([(SC_IMAGE.encode(), rawpeer.EXPLICIT_LE)]))
    kind, _ = rawpeer.read_pdu(sock)
    if kind != 0x02:
        raise RuntimeError(f"not associated (PDU type {kind})")
    return sock


def stream(sock: socket.socket, head: bytes, piece: bytes, limit: int) -> int:
    """Send `head`, then `piece` until `limit` bytes or the SCP closes; bytes it took."""
    sent = 0
    try:
        sock.sendall(head)
        while sent < limit:
            sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass
    return sent


def in_parallel(count: int, attack: Callable[[], int]) -> tuple[list[int], float]:
    results: list[int] = [0] * count
    began = time.monotonic()

    def run(index: int) -> None:
        try:
            results[index] = attack()
        except (OSError, RuntimeError):
            results[index] = 0  # refused before it associated (the per-source cap)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return results, time.monotonic() - began


def report(name: str, scp: Scp, detail: str) -> None:
    peak, after = scp.status("VmHWM"), scp.status("VmRSS")
    print(
        f"{name:13} RSS before {scp.before / MIB:6.0f} MiB, peak {peak / MIB:6.0f} MiB, "
        f"after {after / MIB:6.0f} MiB; {detail}",
        flush=True,
    )


def huge_pdu(args: argparse.Namespace, listen: dict[str, object]) -> None:
    scp = Scp(args.src, listen)

    def attack() -> int:
        with associate(scp.port) as sock:
            head = b"\x04\x00\xff\xff\xff\xf0"  # P-DATA-TF of 4 GiB - 16
            return stream(sock, head, bytes(MIB), args.stream_mib * MIB)

    sent, seconds = in_parallel(args.attackers, attack)
    time.sleep(1)
    report(
        "huge-pdu",
        scp,
        f"{args.attackers} peers got {sum(sent) / MIB:.0f} MiB in before the cut-off "
        f"({seconds:.1f} s)",
    )
    scp.stop()


def big_instance(args: argparse.Namespace, listen: dict[str, object]) -> None:
    scp = Scp(args.src, listen)
    pdu = int(str(listen["max_pdu_size"])) - 6 - 6  # PDU and PDV headers

    def attack() -> int:
        with associate(scp.port) as sock:
            command = rawpeer.c_store_command(SC_IMAGE, "1.2.3.4.5.6.7")
            head = rawpeer.p_data(1, command, command=True, last=True)
            piece = rawpeer.p_data(1, bytes(pdu), command=False, last=False)
            got = stream(sock, head, piece, 2 * args.max_instance_mib * MIB)
            rawpeer.reset(sock)
            return got

    sent, seconds = in_parallel(args.attackers, attack)
    time.sleep(1)
    report(
        "big-instance",
        scp,
        f"{args.attackers} peers got {sum(sent) / MIB:.0f} MiB in "
        f"(limit {args.max_instance_mib} MiB each, {seconds:.1f} s)",
    )
    scp.stop()


def echo_answered(port: int) -> bool:
    from pynetdicom import AE

    ae = AE(ae_title="MODALITY")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="DEID_GW")
    if not assoc.is_established:
        return False
    try:
        return bool(assoc.send_c_echo().Status == 0)
    finally:
        assoc.release()


def silent(args: argparse.Namespace, listen: dict[str, object]) -> None:
    scp = Scp(args.src, listen)
    count = int(str(listen["max_associations"]))
    peers = []
    for _ in range(count):
        try:
            peers.append(associate(scp.port))
        except (OSError, RuntimeError):
            break  # refused: the per-source cap
    began = time.monotonic()
    served = None
    for _ in range(240):
        if echo_answered(scp.port):
            served = time.monotonic() - began
            break
        time.sleep(0.5)
    for sock in peers:
        sock.close()
    shown = f"{served:.1f} s" if served is not None else "not within the bench's bound"
    report("silent", scp, f"{len(peers)} silent associations; a C-ECHO answered after {shown}")
    scp.stop()


def one_source(args: argparse.Namespace, listen: dict[str, object]) -> None:
    scp = Scp(args.src, listen)
    socks = [socket.create_connection(("127.0.0.1", scp.port), timeout=10) for _ in range(50)]
    time.sleep(1)
    kept = 0
    for sock in socks:
        sock.settimeout(0.2)
        try:
            kept += sock.recv(1) != b""
        except TimeoutError:
            kept += 1  # still open: the SCP holds it
        except OSError:
            pass
        sock.close()
    report("one-source", scp, f"50 connections from 127.0.0.1: {kept} kept open")
    scp.stop()


def well_behaved(args: argparse.Namespace, listen: dict[str, object]) -> None:
    if shutil.which("storescu") is None:
        print("storescu      skipped: DCMTK storescu not installed")
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from test_receive_limits import secondary_capture  # the tests' SC image

    scp = Scp(args.src, listen)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sc.dcm"
        secondary_capture(64 * MIB).save_as(path, enforce_file_format=True)
        began = time.monotonic()
        done = subprocess.run(
            ["storescu", "-aec", "DEID_GW", "-xe", "127.0.0.1", str(scp.port), str(path)],
            env=dict(os.environ, TCP_NODELAY="1"),
            capture_output=True,
            timeout=600,
            check=False,
        )
        seconds = time.monotonic() - began
    outcome = "stored" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
    report("storescu", scp, f"one 64 MiB instance {outcome} in {seconds:.1f} s")
    scp.stop()


SCENARIOS = {
    "huge-pdu": huge_pdu,
    "big-instance": big_instance,
    "silent": silent,
    "one-source": one_source,
    "storescu": well_behaved,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--stream-mib", type=int, default=768)
    parser.add_argument("--max-instance-mib", type=int, default=256)
    parser.add_argument("--first-request", type=float, default=10.0)
    parser.add_argument("--src", type=Path, default=ROOT)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    args = parser.parse_args()
    listen: dict[str, object] = {
        "max_associations": 10,
        "max_associations_per_source": 8,
        "max_pdu_size": MIB,
        "max_instance_size": args.max_instance_mib * MIB,
        "first_request_seconds": args.first_request,
    }
    probe = Scp(args.src, listen)
    print(
        f"SCP from {args.src}; listen: {listen}"
        + (f"; not known there: {probe.unknown}" if probe.unknown != "[]" else ""),
        flush=True,
    )
    probe.stop()
    for name in args.only.split(","):
        SCENARIOS[name](args, listen)


if __name__ == "__main__":
    main()

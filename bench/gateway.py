"""edXML through real nodes: what the gateway costs over sending the same bytes as a plain Trục document.

    python -m bench.gateway [--mb 20] [--zip zip|raw]

Two real `truc run` processes on loopback (G22 sends, H29 receives). The
same attachment (random bytes, so deflate cannot shrink it) goes twice:

* **baseline**: ``submit`` with the file streamed over IPC (what `truc send`
  does), then the recipient's ``document.get`` of it (what `truc fetch` does);
* **edXML**: the attachment in a package as VNPT's SDK writes it (base64,
  in VNPT's zip wrapper unless ``--zip raw``), streamed to ``edxml.submit``,
  then the recipient's ``edxml.export`` writing the package back.

Rows: seconds and attachment MB/s of submit (to "accepted": read, decoded,
sealed, stored, durable), submit to the signed 01 receipt, and the
recipient's fetch / export, each with its ratio to the baseline row of the
same run; and the sender's heap (anonymous memory) peak over idle during
the edXML submit, sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import report
from protocol.edxml import EdocFields, FileSpec, ZipMode, build_edoc, read_package, write_package
from simnet.agencies import embedded_agencies
from simnet.processes import FAST_SYNC, ProcessNetwork

G22, H29 = "000.00.00.G22", "000.00.00.H29"
CHUNK = 1 << 20


def _write_package(path: Path, attachment: Path, zip_mode: ZipMode, names: dict[str, str]) -> None:
    fields = EdocFields(
        sender=G22,
        recipients=(H29,),
        subject="Về việc đo hiệu năng cổng edXML",
        number="17",
        notation="VPCP-TH",
        type_name="Công văn",
        date=time.strftime("%Y-%m-%d"),
        signer="Nguyễn Văn A",
    )
    spec = FileSpec(attachment.name, "application/octet-stream")
    package = build_edoc(fields, names=lambda c: names.get(c, ""), files=[spec])

    def chunks() -> Any:
        with open(attachment, "rb") as f:
            while block := f.read(CHUNK):
                yield block

    with open(path, "wb") as out:
        for piece in write_package(package, [chunks], zip=zip_mode, at_ms=int(time.time() * 1000), rng=os.urandom):
            out.write(piece)


def _until_delivered(net: ProcessNetwork, doc: str) -> None:
    while net[G22].call("document.track", id=doc)["recipients"][0]["state"] != "delivered":
        time.sleep(0.05)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--zip", choices=["zip", "raw"], default="zip", help="the attachment in VNPT's zip wrapper, or bare")
    args = ap.parse_args()
    mb = args.mb
    zip_mode = ZipMode(args.zip)
    names = {a.code: a.name for a in embedded_agencies()}
    with tempfile.TemporaryDirectory(prefix="truc-gateway-") as tmp:
        root = Path(tmp)
        attachment = root / "phu-luc.bin"
        with open(attachment, "wb") as f:
            for _ in range(mb):
                f.write(os.urandom(1 << 20))
        digest = hashlib.sha256(attachment.read_bytes()).hexdigest()
        package = root / "goi-tin.edxml"
        _write_package(package, attachment, zip_mode, names)
        net = ProcessNetwork(root / "net", {G22: [G22], H29: [H29]}, network="bench", names=names, tune=FAST_SYNC)
        try:
            net.start_all()
            with net[G22].client(timeout=600) as c:  # warm-up: first submit pays imports and connection set-up
                _until_delivered(net, c.submit(**{"from": G22, "to": [H29], "subject": "warm-up"})["id"])
            # baseline: the same bytes as a plain document
            with net[G22].client(timeout=600) as c:
                submit_s, res = _timed(lambda: c.submit([attachment], **{"from": G22, "to": [H29], "subject": "baseline"}))
            plain = res["id"]
            t, _ = _timed(lambda: _until_delivered(net, plain))
            receipt_s = submit_s + t
            with net[H29].client(timeout=600) as c:
                fetch_s, got = _timed(lambda: c.get_document(plain, root / "fetched"))
            assert got["files"][0]["sha256"] == digest
            # edXML
            idle = net[G22].anon_mib()
            peak = [idle]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], net[G22].anon_mib())
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with net[G22].client(timeout=600) as c:
                e_submit_s, res = _timed(lambda: c.edxml_submit(package))
            stop.set()
            sampler.join()
            doc = res["id"]
            t, _ = _timed(lambda: _until_delivered(net, doc))
            e_receipt_s = e_submit_s + t
            out = root / "exported.edxml"
            with net[H29].client(timeout=600) as c:
                export_s, _ = _timed(lambda: c.edxml_export(doc, out))
            back, files = read_package(out.read_bytes())
            assert back.edoc is not None and hashlib.sha256(files[0]).hexdigest() == digest
        finally:
            net.stop_all()
    rows = [
        {
            "measure": f"baseline: submit {mb} MB as a Trục document (streamed over IPC)",
            "value": submit_s,
            "unit": "s",
            "MB/s": mb / submit_s,
            "vs_baseline": 1.0,
        },
        {
            "measure": f"edxml.submit of the same bytes in a {args.zip} package",
            "value": e_submit_s,
            "unit": "s",
            "MB/s": mb / e_submit_s,
            "vs_baseline": e_submit_s / submit_s,
        },
        {
            "measure": "baseline: submit to signed 01 receipt",
            "value": receipt_s,
            "unit": "s",
            "MB/s": mb / receipt_s,
            "vs_baseline": 1.0,
        },
        {
            "measure": "edXML: submit to signed 01 receipt",
            "value": e_receipt_s,
            "unit": "s",
            "MB/s": mb / e_receipt_s,
            "vs_baseline": e_receipt_s / receipt_s,
        },
        {
            "measure": "baseline: recipient's document.get (sha-256 checked)",
            "value": fetch_s,
            "unit": "s",
            "MB/s": mb / fetch_s,
            "vs_baseline": 1.0,
        },
        {
            "measure": f"edxml.export at the recipient ({args.zip} package written)",
            "value": export_s,
            "unit": "s",
            "MB/s": mb / export_s,
            "vs_baseline": export_s / fetch_s,
        },
        {
            "measure": "sender heap during edxml.submit: peak / idle",
            "value": f"{peak[0]:.0f} / {idle:.0f}",
            "unit": "MiB",
            "MB/s": None,
            "vs_baseline": (peak[0] - idle) / mb,
        },
    ]
    report("gateway", rows)


if __name__ == "__main__":
    main()

"""100 VMs from one image template with linked disks, in one request, against the same work
done directly: ``qemu-img create -b`` and ``virsh define`` in a shell loop.

kimchi's path: ``POST /vms {"template", "name", "count": N}`` -> one ``vm.create`` task on the
daemon's runner -> for each VM a qcow2 leaf over the template's base (libvirt's volume
creation with a backing store, which runs ``qemu-img create -b`` in libvirtd) and the domain
defined -> the task finished once every VM is listed.  The reference is a bash loop doing
the same per VM: ``qemu-img create -f qcow2 -F qcow2 -b BASE leaf`` then ``virsh define``
of the same domain XML kimchi would write.  Both run on the machine's real libvirtd
(``qemu:///system``) into the same throw-away directory pool, interleaved ABBA.

It runs for two bases whose data differ in size, 1 GiB and 20 GiB (``--quick``: 1 and 4),
written with real data: a linked clone's cost must not depend on the base's size.

Targets (issue 13): kimchi <= 1.3x the loop's time; kimchi's time per VM with the large base
within 10 % of that with the small one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import KimchidProc, RedisProc, log, median, wait_for  # noqa: E402

TARGET = 1.3
SIZE_TARGET = 0.10
URI = "qemu:///system"


def make_base(path: Path, gib: int) -> None:
    """A qcow2 of ``gib`` GiB, every cluster written (256 MiB requests)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{gib}G"],
                   check=True)
    cmds: list[str] = []
    for i in range(gib * 4):
        cmds += ["-c", f"write -P 0x{0xa0 + i % 16:x} {i * 256}M 256M"]
    subprocess.run(["qemu-io", *cmds, str(path)], check=True, stdout=subprocess.DEVNULL)


def domain_xmls(conn: Any, names: list[str], pool: str, folder: Path, base: Path,
                template: dict[str, Any]) -> list[str]:
    """The XML kimchi defines for each VM (kimchid's own function), for the reference."""
    from kimchid.model.domainxml import domain_xml as kimchis
    from kimchid.model.domainxml import pick_guest, plan_volumes

    guest = pick_guest(conn.getCapabilities(), False)
    out = []
    for name in names:
        (vol,) = plan_volumes(name, template, "linked")
        out.append(kimchis(name=name, template_name="bench", template=template, guest=guest,
                           volumes=[(vol, str(folder / vol.name))], task_id="hand",
                           created="now"))
    return out


def by_hand(script: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["bash", str(script)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def hand_script(wd: Path, tag: str, names: list[str], xmls: list[str], base: Path,
                folder: Path, capacity: int) -> Path:
    xml_dir = wd / f"xml-{tag}"
    xml_dir.mkdir()
    lines = ["set -e"]
    for name, xml in zip(names, xmls, strict=True):
        (xml_dir / f"{name}.xml").write_text(xml)
        lines.append(f"qemu-img create -q -f qcow2 -F qcow2 -b {base} "
                     f"{folder / f'{name}-0.qcow2'} {capacity}")
        lines.append(f"virsh -q -c {URI} define {xml_dir / f'{name}.xml'} >/dev/null")
    script = wd / f"hand-{tag}.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def remove_vms(conn: Any, pool: Any, prefix: str) -> None:
    """Undefine the VMs named ``prefix...`` and delete their volumes (not timed)."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            dom.undefine()
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        if vol.name().startswith(prefix):
            vol.delete(0)


def through_kimchi(k: KimchidProc, s: Any, template: str, prefix: str, n: int) -> float:
    """``POST /vms`` with count; the time until the task's end comes over /events."""
    took, done = common.post_task(k, s, "/vms", {"template": template, "name": prefix,
                                                 "count": n})
    if done["status"] != "finished":
        raise RuntimeError(f"{prefix}: {done}")
    return took


def measure(wd: Path, conn: Any, pool: Any, folder: Path, n: int, reps: int,
            sizes: tuple[int, int]) -> dict[int, dict[str, list[float]]]:
    """The seconds of each side's runs, by base size."""
    rds = RedisProc(wd / "redis").start()
    k = None
    results: dict[int, dict[str, list[float]]] = {}
    try:
        bases = {}
        for gib in sizes:
            t = time.perf_counter()
            bases[gib] = folder / f"base-{gib}g.qcow2"
            make_base(bases[gib], gib)
            log(f"base of {gib} GiB made in {time.perf_counter() - t:.1f} s")
        pool.refresh(0)
        k = KimchidProc(wd / "kimchid", rds.url, workers=2, tls=True,
                        extra={"libvirt": {"uri": URI}}).start()
        s = k.session()
        templates = {}
        for gib, base in bases.items():
            r = s.post(k.url + "/templates", json={
                "name": f"b{gib}", "source_media": {"type": "image", "path": str(base)},
                "networks": [], "memory": {"current": 128, "maxmemory": 128},
                "disks": [{"index": 0, "size": gib, "pool": {"name": pool.name()}}]},
                timeout=60)
            if r.status_code != 201:
                raise RuntimeError(f"template: {r.status_code} {r.text[:300]}")
            templates[gib] = r.json()
        # warm-up: kimchi's first request, the loop's first virsh
        through_kimchi(k, s, "b1", "w", 2)
        wait_for(lambda: len([v for v in s.get(k.url + "/vms", timeout=30).json()
                              if v["name"].startswith("w-")]) == 2, what="warm-up VMs")
        remove_vms(conn, pool, "w-")
        for gib in sizes:
            results[gib] = {"kimchi": [], "hand": []}
            data = {key: v for key, v in templates[gib].items()
                    if key not in ("name", "invalid", "vms")}
            for rep in range(reps):
                order = ["kimchi", "hand"] if rep % 2 == 0 else ["hand", "kimchi"]
                for who in order + order[::-1]:
                    prefix = f"{who[0]}{gib}r{rep}x{len(results[gib][who])}"
                    names = [f"{prefix}-{i}" for i in range(1, n + 1)]
                    if who == "kimchi":
                        took = through_kimchi(k, s, f"b{gib}", prefix, n)
                    else:
                        xmls = domain_xmls(conn, names, pool.name(), folder, bases[gib], data)
                        script = hand_script(wd, prefix, names, xmls, bases[gib], folder,
                                             int(data["disks"][0]["size"] * 2**30))
                        took = by_hand(script)
                    results[gib][who].append(took)
                    log(f"{gib} GiB base, rep {rep + 1}, {who}: {took:.2f} s "
                        f"({took / n * 1000:.1f} ms per VM)")
                    remove_vms(conn, pool, prefix)
    finally:
        if k is not None:
            k.stop()
        rds.stop()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: 20 VMs, 1 and 4 GiB")
    ap.add_argument("--vms", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    a = ap.parse_args()
    n = a.vms or (20 if a.quick else 100)
    reps = a.reps or (1 if a.quick else 3)
    sizes = (1, 4) if a.quick else (1, 20)

    common.header(f"{n} VMs with linked disks from one image template vs qemu-img create -b + "
                  "virsh define in a loop", a.quick)
    wd = common.workdir("linked")
    with common.libvirtd_pool(URI) as (conn, pool, folder):
        results = measure(wd, conn, pool, folder, n, reps, sizes)

    rows: list[list[Any]] = []
    per_vm = {}
    ok = True
    for gib, r in results.items():
        mk, mh = median(r["kimchi"]), median(r["hand"])
        per_vm[gib] = mk / n
        rows.append([f"{gib} GiB base: kimchi, one POST /vms count={n}", mk,
                     common.spread(r["kimchi"]), mk / n * 1000, mk / mh])
        rows.append([f"{gib} GiB base: qemu-img create -b + virsh define loop", mh,
                     common.spread(r["hand"]), mh / n * 1000, 1.0])
        ok = ok and mk / mh <= TARGET
    print()
    common.table(rows, ["operation", "s (median)", "spread", "ms per VM", "x the loop"])
    small, large = per_vm[sizes[0]], per_vm[sizes[1]]
    size_ok = abs(large / small - 1) <= SIZE_TARGET
    worst = max(median(r["kimchi"]) / median(r["hand"]) for r in results.values())
    common.verdict(ok, f"{n} linked VMs in one request: at most {worst:.2f}x the shell "
                       f"loop's time (target <= {TARGET}x)")
    common.verdict(size_ok, f"time per VM with a {sizes[1]} GiB base {large * 1000:.1f} ms "
                            f"vs {sizes[0]} GiB {small * 1000:.1f} ms: "
                            f"{(large / small - 1) * 100:+.1f} % (target within "
                            f"{SIZE_TARGET * 100:.0f} %)")
    common.footer()
    return 0 if ok and size_ok else 1


if __name__ == "__main__":
    sys.exit(main())

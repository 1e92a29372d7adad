"""QMP against the real qemu-system-aarch64 7.2, both driven by the ``qemu.qmp`` client
(and by a raw socket for malformed input).

Values that differ by nature are normalised, each for a stated reason:
- versions: QEMU reports 7.2.x and its distribution's package string, pyqemu reports
  7.2.0 and "pyqemu <version>" (the shape must agree: integers and a string);
- thread ids: host thread ids of the vCPUs (checked to be integers, then dropped);
- socket paths in query-chardev (each machine has its own sockets);
- query-commands: pyqemu implements a subset, so its names must all be QEMU's;
- event timestamps: wall clock (checked to be near now, then dropped).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ExecuteError, QMPClient

from tests.monitor.conftest import Machine, raw_qmp

pytest.importorskip("qemu.qmp")


def _norm_version(v: dict[str, Any]) -> dict[str, Any]:
    q = v["qemu"]
    assert all(isinstance(q[k], int) for k in ("major", "minor", "micro"))
    assert isinstance(v["package"], str)
    assert (q["major"], q["minor"]) == (7, 2)
    return {"qemu": {"major": 7, "minor": 2, "micro": "<n>"}, "package": "<pkg>"}


def _norm_cpus(cpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in cpus:
        assert isinstance(c["thread-id"], int) and c["thread-id"] > 0
        out.append({k: v for k, v in c.items() if k != "thread-id"})
    return out


def _norm_chardev(entries: list[dict[str, Any]], qmp_path: str, hmp_path: str,
                  ) -> dict[str, dict[str, Any]]:
    out = {}
    for e in entries:
        f = e["filename"].replace(qmp_path, "<qmp>").replace(hmp_path, "<hmp>")
        out[f] = {"frontend-open": e["frontend-open"], "filename": f}
    return out


async def _queries(m: Machine) -> dict[str, Any]:
    qmp = QMPClient(m.kind)
    await qmp.connect(m.qmp_path)
    try:
        assert qmp.greeting is not None
        greeting = qmp.greeting._asdict()
        res: dict[str, Any] = {"greeting": greeting}
        for cmd in ("query-version", "query-status", "query-cpus-fast", "query-name",
                    "query-uuid", "query-kvm", "query-block", "query-target",
                    "query-chardev", "query-commands"):
            res[cmd] = await qmp.execute(cmd)
        res["hmp"] = await qmp.execute("human-monitor-command",
                                       {"command-line": "info status"})
        res["hmp-cpu0"] = await qmp.execute("human-monitor-command",
                                            {"command-line": "info cpus", "cpu-index": 0})
    finally:
        await qmp.disconnect()
    return res


def test_queries_match_qemu(machines: tuple[Machine, Machine]) -> None:
    q, p = machines
    theirs = asyncio.run(_queries(q))
    ours = asyncio.run(_queries(p))
    for res in (theirs, ours):
        g = res["greeting"]["QMP"]
        assert g["capabilities"] == ["oob"]
        assert _norm_version(g["version"]) == _norm_version(res["query-version"])
    for key in ("query-status", "query-name", "query-uuid", "query-kvm", "query-block",
                "query-target", "hmp"):
        assert ours[key] == theirs[key], key
    assert _norm_cpus(ours["query-cpus-fast"]) == _norm_cpus(theirs["query-cpus-fast"])
    # the QMP monitor's own chardev: same label-independent entry in both
    qc = _norm_chardev(theirs["query-chardev"], q.qmp_path, q.hmp_path)
    pc = _norm_chardev(ours["query-chardev"], p.qmp_path, p.hmp_path)
    for f in ("unix:<qmp>,server=on",):
        assert pc[f] == qc[f]
    qnames = {c["name"] for c in theirs["query-commands"]}
    pnames = {c["name"] for c in ours["query-commands"]}
    assert pnames <= qnames, pnames - qnames
    assert len(pnames) >= 15
    for res in (theirs, ours):
        line = res["hmp-cpu0"]
        assert line.startswith("* CPU #0: thread_id=") and line.endswith("\r\n")


async def _errors(m: Machine) -> list[tuple[str, str]]:
    qmp = QMPClient(m.kind)
    await qmp.connect(m.qmp_path)
    out = []
    cases: list[tuple[str, dict[str, Any] | None]] = [
        ("no-such-command", None),
        ("qmp_capabilities", None),
        ("human-monitor-command", None),
        ("human-monitor-command", {"command-line": 5}),
        ("human-monitor-command", {"command-line": "info cpus", "cpu-index": 3}),
        ("human-monitor-command", {"command-line": "info cpus", "cpu-index": "0"}),
        ("stop", {"x": 1}),
        ("query-status", {"verbose": True}),
        ("qmp_capabilities", {"enable": ["oob"]}),
    ]
    try:
        for cmd, args in cases:
            try:
                r = await qmp.execute(cmd, args)
                out.append(("return", json.dumps(r)))
            except ExecuteError as e:
                out.append((e.error.error.class_, e.error.error.desc))
    finally:
        await qmp.disconnect()
    return out


def test_command_errors_match_qemu(machines: tuple[Machine, Machine]) -> None:
    q, p = machines
    assert asyncio.run(_errors(p)) == asyncio.run(_errors(q))


def _raw_session(m: Machine, chunks: list[bytes]) -> list[Any]:
    """Send ``chunks`` (before and after negotiation as they come) and collect every
    reply; the run ends with a query-name whose reply (id "end") is the last."""
    s, f = raw_qmp(m.qmp_path)
    replies: list[Any] = []
    try:
        for chunk in chunks + [b'{"execute": "query-name", "id": "end"}\n']:
            s.sendall(chunk)
            time.sleep(0.02)
        while True:
            line = f.readline()
            assert line, "connection closed"
            obj = json.loads(line)
            replies.append(obj)
            if obj.get("id") == "end":
                return replies
    finally:
        f.close()
        s.close()


PROTOCOL_CHUNKS = [
    b'{"execute": "query-status"}\n',  # before negotiation
    b'{"execute": "qmp_capabilities", "id": 1}\n',
    b'{"execute": }\n', b'{"execute" "x"}\n', b'}\n', b'{"a": 1,}\n', b'5\n', b'"str"\n',
    b"{'execute': 'query-name', 'id': 'single'}\n",
    b'{"execute": "query-name", "id": 2} {"execute": "query-name", "id": 3}\n',
    b'@\n', b'{"execute": "query-name", "id": tru}\n', b'[1, 2\n', b']\n',
    b'{"execute": "query-name",\n "id": 4}\n',
    b'{"execute": "query-na', b'me", "id": 5}\n',
    b'{"execute": "query-name", "id": 1.5e3}\n',
    b'{"execute": "query-name", "id": null}\n',
    b'{"execute": "query-name", "id": [1, {"a": "\\u00e9"}]}\n',
    b'{"execute": "query-name", "arguments": null}\n',
    b'{"execute": 5}\n', b'{}\n', b'{"execute": "query-name", "control": {}}\n',
    b'{"exec-oob": "query-status", "id": 6}\n',
    b'{"execute": "query-status", "exec-oob": "x"}\n',
    b'{"execute": "stop", "arguments": []}\n',
    b'garbage\n',
]


def test_protocol_errors_match_qemu(machines: tuple[Machine, Machine]) -> None:
    q, p = machines
    theirs = _raw_session(q, PROTOCOL_CHUNKS)
    ours = _raw_session(p, PROTOCOL_CHUNKS)
    assert ours == theirs


def test_wire_encoding_matches_qemu(machines: tuple[Machine, Machine]) -> None:
    """Byte for byte where key order cannot differ: non-ASCII escapes, floats, nesting."""
    for m in machines:
        s, f = raw_qmp(m.qmp_path)
        try:
            s.sendall(b'{"execute": "qmp_capabilities"}\n')
            assert f.readline() == b'{"return": {}}\r\n'
            s.sendall('{"execute": "query-name", "id": ["\u00e9\U0001F600\\t/", 0.1, '
                      '-7, true]}\n'.encode())
            line = f.readline()
        finally:
            f.close()
            s.close()
        assert line == (b'{"return": {"name": "monitor-test"}, "id": ["\\u00E9\\uD83D\\uDE00\\t/", '
                        b'0.10000000000000001, -7, true]}\r\n'), m.kind


EVENT_SCRIPT = ("cont", "stop", "query-status", "system_reset", "system_powerdown", "cont",
                "query-status", "system_reset", "query-status", "stop", "quit")


async def _events(m: Machine, script: tuple[str, ...] = EVENT_SCRIPT
                  ) -> list[tuple[str, Any]]:
    qmp = QMPClient(m.kind)
    await qmp.connect(m.qmp_path)
    seen: list[tuple[str, Any]] = []
    with qmp.listener() as listener:
        for cmd in script:
            before = time.time()
            r = await qmp.execute(cmd)
            if cmd == "query-status":
                seen.append(("status", r))
            while not listener.empty():
                ev = await listener.get()
                ts = ev["timestamp"]
                t = ts["seconds"] + ts["microseconds"] / 1e6
                assert before - 5 < t < time.time() + 5
                assert isinstance(ts["microseconds"], int) and 0 <= ts["microseconds"] < 1e6
                seen.append((ev["event"], dict(ev.get("data", {}))))
        await asyncio.sleep(0.2)
        while not listener.empty():
            ev = await listener.get()
            seen.append((ev["event"], dict(ev.get("data", {}))))
    try:
        await qmp.disconnect()
    except EOFError:  # QEMU has exited after quit
        pass
    return seen


def test_run_control_and_events_match_qemu(
        fresh_machines: tuple[Machine, Machine]) -> None:
    q, p = fresh_machines
    theirs = asyncio.run(_events(q))
    ours = asyncio.run(_events(p))
    assert ours == theirs
    assert ("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"}) in ours
    if p.vm is not None:
        assert p.vm.runstate == "shutdown"
    else:  # pyqemu-system-aarch64 exits with status 0 after quit, as QEMU does
        assert p.proc is not None and p.proc.wait(20) == 0
        assert q.proc is not None and q.proc.wait(20) == 0


def test_reset_of_paused_vm_is_prelaunch(
        fresh_machines: tuple[Machine, Machine]) -> None:
    q, p = fresh_machines
    script = ("cont", "stop", "system_reset", "query-status")
    assert asyncio.run(_events(p, script)) == asyncio.run(_events(q, script))


def _interleaving(m: Machine) -> list[str]:
    """The order of events and replies on the wire around cont/stop/quit."""
    s, f = raw_qmp(m.qmp_path)
    order: list[str] = []
    try:
        s.sendall(b'{"execute": "qmp_capabilities"}\n')
        f.readline()
        for cmd in ("cont", "stop", "system_reset", "quit"):
            s.sendall(json.dumps({"execute": cmd, "id": cmd}).encode() + b"\n")
            while True:
                obj = json.loads(f.readline())
                order.append(obj["event"] if "event" in obj else f"return:{obj['id']}")
                if obj.get("id") == cmd:
                    break
    finally:
        f.close()
        s.close()
    return order


def test_event_reply_order_matches_qemu(
        fresh_machines: tuple[Machine, Machine]) -> None:
    q, p = fresh_machines
    assert _interleaving(p) == _interleaving(q)


def test_events_held_until_negotiation(
        fresh_machines: tuple[Machine, Machine]) -> None:
    """A second, unnegotiated connection gets no events (QEMU's behaviour checked too)."""
    for m in fresh_machines:
        s, f = raw_qmp(m.qmp_path)
        try:
            s.sendall(b'{"execute": "cont"}\n')  # refused: not negotiated
            err = json.loads(f.readline())
            assert err["error"]["class"] == "CommandNotFound"
            s.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "cont", "id": 1}\n')
            lines = [json.loads(f.readline()) for _ in range(3)]
            assert lines[0] == {"return": {}}
            assert lines[1]["event"] == "RESUME" and lines[2] == {"return": {}, "id": 1}
        finally:
            f.close()
            s.close()


def _with_extra_monitor(tmp_path: Path, elf: Path, qemu_arg: tuple[str, ...],
                        py_arg: tuple[str, ...], drive: Any) -> tuple[Any, Any]:
    """Run ``drive()`` against QEMU and pyqemu, each given an extra monitor option."""
    import threading

    from tests.monitor.conftest import start_pyqemu, start_qemu, use_cli

    qdir = tmp_path / "qemu"
    qdir.mkdir()
    q = start_qemu(qdir, elf, extra=qemu_arg)
    try:
        theirs = drive(q, 0)
    finally:
        q.stop()
    if use_cli():
        p = start_qemu(tmp_path, elf, extra=py_arg, binary="pyqemu", prefix="py")
        try:
            return theirs, drive(p, 1)
        finally:
            p.stop()
    # the tiny board: the extra monitor set up by hand on the running main loop
    from pyqemu.chardev import parse_compat
    from pyqemu.monitor import start_monitor

    m = start_pyqemu(tmp_path, elf)
    assert m.vm is not None
    mode = "control"
    pretty = py_arg[0] == "-qmp-pretty"
    opts = parse_compat("compat_monitor9", py_arg[1])
    done = threading.Event()
    holder: list[Any] = []

    def setup() -> None:
        from pyqemu.chardev import new_from_opts as mk

        chr_ = mk(opts)
        holder.append(chr_)
        m.vm.config.chardevs[chr_.id] = chr_
        start_monitor(m.vm, chr_, mode, pretty)
        chr_.attach(m.vm.main_loop)
        done.set()

    m.vm.main_loop.call_soon(setup)
    done.wait(5)
    try:
        return theirs, drive(m, 1)
    finally:
        for c in holder:
            c.close()
        m.stop()


def test_pretty_output_matches_qemu(tmp_path: Path, pattern: tuple[Path, int]) -> None:
    """-qmp-pretty: the same bytes as QEMU's (the version numbers and timestamps
    normalised)."""
    import re

    from tests.monitor.conftest import _wait_connect

    elf, _ = pattern
    lines = [b'{"execute": "qmp_capabilities"}', b'{"execute": "query-block"}',
             b'{"execute": "cont", "id": [1, {}, "x"]}', b'{"execute": "nope"}',
             b'{"execute": "query-name"}']
    paths = [str(tmp_path / "qp.sock"), str(tmp_path / "pp.sock")]

    def drive(m: Machine, i: int) -> list[bytes]:
        s = _wait_connect(paths[i])
        s.settimeout(0.25)

        def read() -> bytes:
            out = b""
            try:
                while d := s.recv(65536):
                    out += d
            except TimeoutError:
                pass
            return out

        got = [read()]
        for ln in lines:
            s.sendall(ln + b"\n")
            got.append(read())
        s.close()
        return [re.sub(rb'("micro": |"seconds": |"microseconds": )\d+', rb"\1<n>",
                       re.sub(rb'"package": "[^"]*"', b'"package": "<pkg>"', g))
                for g in got]

    theirs, ours = _with_extra_monitor(
        tmp_path, elf, ("-qmp-pretty", f"unix:{paths[0]},server=on,wait=off"),
        ("-qmp-pretty", f"unix:{paths[1]},server=on,wait=off"), drive)
    assert ours == theirs


def test_qmp_over_tcp_matches_qemu(tmp_path: Path, pattern: tuple[Path, int]) -> None:
    """-qmp tcp:127.0.0.1:PORT,server=on,wait=off: the qemu.qmp client over TCP; the
    QMP chardev's query-chardev entry names both ends as QEMU does."""
    import re
    import socket as socket_mod

    def free_port() -> int:
        with socket_mod.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    ports = [free_port(), free_port()]

    async def run(port: int) -> list[Any]:
        qmp = QMPClient("tcp")
        for _ in range(200):
            try:
                await qmp.connect(("127.0.0.1", port))
                break
            except Exception:  # noqa: BLE001 - not listening yet
                await asyncio.sleep(0.05)
        out = [await qmp.execute("query-status"), await qmp.execute("query-chardev")]
        await qmp.disconnect()
        return out

    def drive(m: Machine, i: int) -> list[Any]:
        res = asyncio.run(run(ports[i]))
        chardevs = [dict(c, label="<label>",
                         filename=re.sub(r" <-> 127\.0\.0\.1:\d+$", " <-> <peer>",
                                         c["filename"].replace(str(ports[i]), "<port>")))
                    for c in res[1] if c["filename"].startswith("tcp:")]
        return [res[0], chardevs]

    elf, _ = pattern
    theirs, ours = _with_extra_monitor(
        tmp_path, elf, ("-qmp", f"tcp:127.0.0.1:{ports[0]},server=on,wait=off"),
        ("-qmp", f"tcp:127.0.0.1:{ports[1]},server=on,wait=off"), drive)
    assert ours == theirs
    assert ours[1] == [{"frontend-open": True, "label": "<label>",
                        "filename": "tcp:127.0.0.1:<port>,server=on <-> <peer>"}]


# JSON edge cases: QEMU's lexer errors ("stray '<text>'" up to the offending byte),
# recovery, Unicode escapes and surrogates, UTF-8 checks, number forms, nesting limits
JSON_CASES = [b'{"execute":"query-name","id":"\xc3"}', b'{"execute":"query-name","id":"\xc3\xa9\xe2\x82"}', b'{"execute":"query-name","id":"\\ud83d\\ude00"}', b'{"execute":"query-name","id":"\\ude00"}', b'{"execute":"query-name","id":"\\ud83dx"}',
 b'{"execute":"query-name","id":"\\u00"}', b'{"execute":"query-name","id":"\\"}', b"{'a':\"b\"}", b'{"a":1}}', b'}}}', b'{"execute":"query-name","id":-1E400}',
 b'{"execute":"query-name","id":[1 2]}', b'{"execute":"query-name","id":[1:2]}', b'{"execute":"query-name","id":{"a"}}', b'{"execute":"query-name","id":{"a":}}', b'{"execute":"query-name","id":{,}}', b'\x00{"execute":"query-name"}', b'\xfe\xff{"execute":"query-name"}', b'{"execute":"query-name","id":"\t"}',
b'{"execute":"query-name","id":01}', b'{"execute":"query-name","id":-}', b'{"execute":"query-name","id":1.}',
 b'{"execute":"query-name","id":1e}', b'{"execute":"query-name","id":+1}', b'{"execute":"query-name","id":"\\x41"}',
 b'{"execute":"query-name","id":"a\x01b"}', b'{"execute":"query-name","id":"\\u0000"}', b'{"execute":"query-name","id":"\\ud800"}',
 b'{"execute":"query-name","id":"\xff\xfe"}', b'{"execute":"query-name","id":"\xc3\xa9"}', b'{"execute":"query-name","id":18446744073709551615}',
 b'{"execute":"query-name","id":18446744073709551616}', b'{"execute":"query-name","id":-9223372036854775809}',
 b'{"execute":"query-name","id":1E400}', b'{"execute":"query-name","id":"\\uZZZZ"}', b'{"execute":"query-name","id":TRUE}',
 b'[' * 1025 + b']' * 1025, b'{"execute":"query-name","id":' + b'[' * 1000 + b']' * 1000 + b'}',
 b'{"execute":"query-name","id":"\\/"}', b"{'execute':\"query-name\",'id':'it\\'s'}", b'{"execute":"query-name" , "id" : 1 }',
 b'{"execute":"query-name","id":{"a":1,"a":2}}', b'{1:2}', b'{"execute":"query-name","id":[1,]}', b'{"execute":"query-name","id":[,1]}',
 b'{"execute":"query-name","id":nul}', b'{"execute":"query-name","id":0.5e-3}', b'{"execute":"query-name","id":-0}', b'{"execute":"query-name","id":-0.0}',
 b'{"execute":"query-name","id":123456789012345678901234567890}', b'{"execute":"query-name","id":1.7976931348623157e308}',
]


def _json_run(m: Machine) -> list[list[bytes]]:
    s, f = raw_qmp(m.qmp_path)
    s.settimeout(10)
    out = []
    try:
        s.sendall(b'{"execute": "qmp_capabilities"}\n')
        f.readline()
        for c in JSON_CASES:
            # every case is followed by a command whose reply proves the monitor lives
            s.sendall(c + b'\n{"execute": "query-name", "id": "sync"}\n')
            lines = []
            while True:
                line = f.readline()
                assert line, "connection closed"
                if b'"sync"' in line:
                    break
                lines.append(line)
            out.append(lines)
    finally:
        f.close()
        s.close()
    return out


def test_json_edge_cases_match_qemu(machines: tuple[Machine, Machine]) -> None:
    q, p = machines
    theirs, ours = _json_run(q), _json_run(p)
    diffs = [f"{c[:60]!r}:\n qemu   {a[:3]}\n pyqemu {b[:3]}"
             for c, a, b in zip(JSON_CASES, theirs, ours) if a != b]
    assert not diffs, "\n".join(diffs)


def test_query_machines_virt_entry_matches_qemu(machines: tuple[Machine, Machine]) -> None:
    """pyqemu's machine types are QEMU's, described as QEMU describes them."""
    from tests.monitor.conftest import cli_available

    if not cli_available():
        pytest.skip("no machine registry yet")

    async def run(m: Machine) -> list[dict[str, Any]]:
        qmp = QMPClient(m.kind)
        await qmp.connect(m.qmp_path)
        try:
            r = await qmp.execute("query-machines")
        finally:
            await qmp.disconnect()
        assert isinstance(r, list)
        return r

    q, p = machines
    theirs = {e["name"]: e for e in asyncio.run(run(q))}
    ours = asyncio.run(run(p))
    assert ours
    for e in ours:
        assert e == theirs[e["name"]], e["name"]

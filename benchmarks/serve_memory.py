"""`mbert-edge serve` under megabyte texts: peak RSS and CPU seconds per request while 8 clients at once each
send one text of about 1 MB (inside the default 2 MB body limit), read for its head and in windows.

    python benchmarks/serve_memory.py BUNDLE --text FILE [--clients 8] [--megabytes 1] [--json FILE]

The text is FILE's content repeated up to the size. The server runs with its defaults (a window request of that
size is over --max-input-tokens: it is answered 422, and what that costs is the figure). Peak RSS is the server
process's VmHWM, reset once the server is idle (`/proc/PID/clear_refs`, Linux); CPU is its user + system time.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click
import httpx
from json_output import JSON_OPTION, write_json
from serve_load import Server

from mbert_edge.runtime.cpus import cpu_flags


def status_kb(pid: int, field: str) -> int:
    return int(
        next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field))
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_all(url: str, text: str, truncation: str, clients: int) -> list[int]:
    async with httpx.AsyncClient(timeout=300) as client:
        answers = await asyncio.gather(
            *(client.post(f"{url}/predict", json={"inputs": text, "truncation": truncation}) for _ in range(clients))
        )
    return [a.status_code for a in answers]


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--text", "text_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--clients", default=8, show_default=True)
@click.option("--megabytes", default=1.0, show_default=True)
@JSON_OPTION
def main(bundle: Path, text_file: Path, clients: int, megabytes: float, json_file: Path | None) -> None:
    source = text_file.read_text(encoding="utf-8")
    size = int(megabytes * 1_000_000)
    text = (source * (size // len(source) + 1))[:size]
    click.echo(f"CPU flags: {' '.join(sorted(cpu_flags()))}; {clients} clients x {len(text.encode()) / 1e6:.2f} MB")
    click.echo("\n| truncation | idle RSS MB | peak RSS MB | peak - idle MB | CPU s per request | statuses |")
    click.echo("|---|---|---|---|---|---|")
    rows = []
    for truncation in ("head", "window"):
        server = Server(bundle, "auto", ())
        try:
            pid = server.process.pid
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak from here on, not the model's load
            idle, cpu = status_kb(pid, "VmRSS") / 1024, cpu_seconds(pid)
            statuses = asyncio.run(send_all(server.url, text, truncation, clients))
            peak, spent = status_kb(pid, "VmHWM") / 1024, cpu_seconds(pid) - cpu
        finally:
            server.stop()
        counted = {s: statuses.count(s) for s in sorted(set(statuses))}
        click.echo(
            f"| {truncation} | {idle:.0f} | {peak:.0f} | {peak - idle:.0f} | {spent / clients:.3f} | {counted} |"
        )
        rows.append(
            {
                "truncation": truncation,
                "idle_rss_mb": idle,
                "peak_rss_mb": peak,
                "cpu_s_per_request": spent / clients,
                "statuses": counted,
            }
        )
    write_json(
        json_file,
        {"cpu_flags": sorted(cpu_flags()), "clients": clients, "megabytes": len(text.encode()) / 1e6, "rows": rows},
    )


if __name__ == "__main__":
    main()

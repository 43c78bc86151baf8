"""Load test of `mbert-edge serve`: real sentences, one per request, at several concurrencies, against the
same sentences through `Classifier.predict` in this process (one at a time, and in one batched call).

    python benchmarks/serve_load.py BUNDLE --data ../shared/data/tatoeba --out benchmarks/results/serve-load

The server runs in a subprocess on 127.0.0.1 (a free port) and is stopped at the end. The client is bounded:
`--concurrency` keep-alive connections on plain asyncio streams (see `Connection` for why not httpx), one
request in flight on each, each sentence sent once per level after a short warm-up. Every answer is checked
against the in-process result of its own sentence. Before each level, the same sentences go through
`Classifier.predict` in this process (with the server's session config, `SERVER_SESSION_CONFIG`) one at a
time and in one batched call: the machine is shared, and figures minutes apart are not comparable. The
runtime's default options (ONNX Runtime's thread spinning on) are measured once, at the start.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np

from mbert_edge import Classifier
from mbert_edge.runtime.cpus import available_cpus, cpu_flags
from mbert_edge.serve.settings import SERVER_SESSION_CONFIG
from mbert_edge.textdata import load_textset


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.array(seconds) * 1000, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def in_process(clf: Classifier, sentences: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """`clf` on the sentences one at a time and in one batched call, and each sentence's probabilities alone."""
    clf.predict(sentences[:64])  # warm-up
    single, probabilities = [], []
    started = time.perf_counter()
    for sentence in sentences:
        t = time.perf_counter()
        probabilities.append(clf.predict_proba(sentence))
        single.append(time.perf_counter() - t)
    single_wall = time.perf_counter() - started
    started = time.perf_counter()
    clf.predict(sentences, batch_size=32)
    batched_wall = time.perf_counter() - started
    row = {
        "single_per_s": len(sentences) / single_wall,
        "single_p50_ms": percentiles_ms(single)["p50_ms"],
        "batched_per_s": len(sentences) / batched_wall,
    }
    return row, np.array(probabilities)


class Server:
    def __init__(self, bundle: Path, precision: str, options: tuple[str, ...]) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mbert_edge",
                "serve",
                str(bundle),
                "--precision",
                precision,
                "--port",
                self.url.rsplit(":", 1)[1],
                *options,
            ]
        )
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise click.ClickException("the server exited before it was healthy")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                raise click.ClickException("the server was not healthy within 120 s")
            time.sleep(0.2)

    def batches(self) -> tuple[float, float]:
        """(batches, texts) run so far."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        found = dict(re.findall(r"^mbert_edge_batch_size_(count|sum) (\S+)$", text, re.M))
        return float(found["count"]), float(found["sum"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams, for the load. httpx measured 1.3 ms of client
    CPU per request at 8 connections and 4.4 ms at 128 here: on 2 cores that takes up to a third of a core
    from the server it measures. The server always answers with a Content-Length."""

    def __init__(self, url: str) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (path.encode(), self.host.encode(), len(body), body)
            )
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, await reader.readexactly(length)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            writer.close()
            self.streams = None
            raise

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def load_level(server: Server, sentences: list[str], concurrency: int, warmup: int) -> dict[str, Any]:
    """Each sentence sent once by `concurrency` workers (one connection each), after `warmup` untimed
    requests; latencies, statuses, answers by index, and the server's batches meanwhile."""
    latencies: list[float] = []
    answers: dict[int, list[Any]] = {}
    statuses: dict[str, int] = {}
    connections = [Connection(server.url) for _ in range(concurrency)]

    async def worker(connection: Connection, indices: list[int], record: bool) -> None:
        while indices:
            index = indices.pop()
            body = json.dumps({"inputs": sentences[index], "top_k": None}).encode()
            started = time.perf_counter()
            try:
                code, answer = await connection.post("/predict", body)
                status = str(code)
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError) as exc:
                status, answer = type(exc).__name__, b""
            if not record:
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                answers.setdefault(index, []).append(json.loads(answer))

    try:
        warm = list(range(min(warmup, len(sentences))))
        await asyncio.gather(*(worker(c, warm, False) for c in connections))
        todo = list(range(len(sentences)))[::-1]
        batches_before = await asyncio.to_thread(server.batches)
        started = time.perf_counter()
        await asyncio.gather(*(worker(c, todo, True) for c in connections))
        wall = time.perf_counter() - started
        batches = np.subtract(await asyncio.to_thread(server.batches), batches_before)
    finally:
        for connection in connections:
            connection.close()
    return {
        "wall": wall,
        "latencies": latencies,
        "answers": answers,
        "statuses": statuses,
        "mean_batch_size": batches[1] / max(batches[0], 1),
    }


def check_answers(answers: dict[int, list[Any]], labels: list[str], expected: np.ndarray) -> dict[str, Any]:
    """Lost (no answer) and duplicated (more than one) answers; against each sentence's in-process result
    alone: the share with the same top label and the largest |probability difference| (0 with a
    batch-invariant model; plain dynamic INT8 shifts with batch-mates, so its answers cannot be traced back
    to their sentence by their values)."""
    order = {label: i for i, label in enumerate(labels)}
    lost = sum(1 for i in range(len(expected)) if i not in answers)
    duplicated = sum(len(a) - 1 for a in answers.values())
    same_label, largest = 0, 0.0
    for index, (answer, *_) in answers.items():
        served = np.zeros(len(labels))
        for item in answer:
            served[order[item["label"]]] = item["score"]
        largest = max(largest, float(np.abs(expected[index] - served).max()))
        same_label += int(served.argmax() == expected[index].argmax())
    return {
        "lost": lost,
        "duplicated": duplicated,
        "same_label": same_label / max(len(answers), 1),
        "max_abs_diff": largest,
    }


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each against the in-process figures measured just before its level."""
    by_level = {row["concurrency"]: row for row in results["levels"]}
    lines = []
    if 32 in by_level:
        row = by_level[32]
        base = row["in_process"]
        lines.append(
            f"- concurrency 32: {row['requests_per_s'] / base['batched_per_s']:.0%} of the in-process batched "
            f"throughput (target >= 80%), {row['requests_per_s'] / base['single_per_s']:.2f}x one at a time "
            f"(target >= 2x); lost {row['lost']}, duplicated {row['duplicated']}"
        )
    if 1 in by_level:
        gap = by_level[1]["p50_ms"] - by_level[1]["in_process"]["single_p50_ms"]
        lines.append(f"- concurrency 1: p50 {gap:+.1f} ms against the in-process single call (target within 2 ms)")
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]
    x = [row["concurrency"] for row in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(x, [row["requests_per_s"] for row in levels], "o-", label="mbert-edge serve")
    left.plot(
        x,
        [row["in_process"]["batched_per_s"] for row in levels],
        "s--",
        color="gray",
        label="in-process, one batched call (just before)",
    )
    left.plot(
        x,
        [row["in_process"]["single_per_s"] for row in levels],
        "^:",
        color="gray",
        label="in-process, one at a time (just before)",
    )
    left.set(
        xscale="log",
        xlabel="concurrent requests",
        ylabel="requests/s (one sentence each)",
        xticks=x,
        xticklabels=x,
        title="throughput",
    )
    left.legend(fontsize=8, loc="lower right")
    right.plot(x, [row["p99_ms"] for row in levels], "o-", color="C3", label="p99")
    right.plot(x, [row["p50_ms"] for row in levels], "o-", color="C1", label="p50")
    right.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent requests",
        ylabel="latency ms",
        xticks=x,
        xticklabels=x,
        title="latency",
    )
    right.legend(fontsize=8)
    fig.suptitle(results["title"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(results: dict[str, Any]) -> str:
    default = results["default_options"]
    lines = [
        results["title"],
        "",
        "| concurrency | requests/s | p50 ms | p95 ms | p99 ms | mean batch | 429 | errors | lost / duplicated | "
        "same top label, max abs diff | in-process just before: batched/s, one-at-a-time/s, single p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["levels"]:
        base = row["in_process"]
        lines.append(
            f"| {row['concurrency']} | {row['requests_per_s']:.1f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['mean_batch_size']:.1f} | {row['429']} | {row['errors']} | "
            f"{row['lost']} / {row['duplicated']} | {row['same_label']:.1%}, {row['max_abs_diff']:.1e} | "
            f"{base['batched_per_s']:.1f}, {base['single_per_s']:.1f}, {base['single_p50_ms']:.1f} |"
        )
    lines += [
        "",
        f"In-process with the runtime's default session options (thread spinning on), at the start: "
        f"batched {default['batched_per_s']:.1f}/s, one at a time {default['single_per_s']:.1f}/s, "
        f"single p50 {default['single_p50_ms']:.1f} ms.",
        "",
    ]
    return "\n".join(lines + targets(results)) + "\n"


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A folder of <lang>.txt (Tatoeba) or one file of sentences.",
)
@click.option("--per-group", default=80, show_default=True, help="Sentences per language (25 x 80 = 2,000).")
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True)
@click.option("--concurrency", default="1,8,32,128", show_default=True)
@click.option("--warmup", default=64, show_default=True, help="Untimed requests before each level.")
@click.option(
    "--server-option",
    "server_options",
    multiple=True,
    help="Passed to `mbert-edge serve` (e.g. --server-option=--max-wait-ms=1); repeatable.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(
    bundle: Path,
    data: Path,
    per_group: int,
    precision: str,
    concurrency: str,
    warmup: int,
    server_options: tuple[str, ...],
    out: Path,
) -> None:
    texts = load_textset(data).limited(per_group).texts
    sentences = [s for group in texts.values() for s in group]
    flags = sorted(f for f in cpu_flags() if f in ("avx2", "avx512_vnni", "avx_vnni"))
    results: dict[str, Any] = {
        "title": f"{bundle.name} {precision}, {len(sentences)} sentences in {len(texts)} languages, "
        f"{available_cpus()} cores ({', '.join(flags)}), server options: {' '.join(server_options) or 'defaults'}",
        "machine": {"cpus": available_cpus(), "flags": flags},
    }
    click.echo("in-process, the runtime's default options ...", err=True)
    results["default_options"], _ = in_process(Classifier(bundle, precision), sentences)
    clf = Classifier(bundle, precision, session_config=SERVER_SESSION_CONFIG)
    server = Server(bundle, precision, server_options)
    try:
        results["levels"] = []
        for level in (int(c) for c in concurrency.split(",")):
            click.echo(f"in-process, then concurrency {level} ...", err=True)
            base, expected = in_process(clf, sentences)  # just before: the machine is shared and drifts
            run = asyncio.run(load_level(server, sentences, level, warmup))
            statuses = run["statuses"]
            results["levels"].append(
                {
                    "concurrency": level,
                    "requests_per_s": len(sentences) / run["wall"],
                    **percentiles_ms(run["latencies"]),
                    "mean_batch_size": run["mean_batch_size"],
                    "429": statuses.get("429", 0),
                    "errors": sum(n for s, n in statuses.items() if s not in ("200", "429")),
                    "statuses": statuses,
                    "in_process": base,
                    **check_answers(run["answers"], clf.labels, expected),
                }
            )
    finally:
        server.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "serve_load.md").write_text(markdown(results), encoding="utf-8")
    plot(results, out / "serve_load.png")
    click.echo(markdown(results))


if __name__ == "__main__":
    main()

"""Soak: ≥ 100,000 digits through the loopback Replicate API with faults switched on.

    python bench/soak.py [--digits 100000] [--batch-size 500] [--max-concurrency 4] [--fault-rate 0.1]

The fake API (tests/fakes/replicate_server.py) runs in a child process, so the memory measured is
the client's alone (the fake keeps a ledger of every request and prediction, which grows). Its
fault queues are filled up front with a seeded random schedule: about ``--fault-rate`` of the
creates, polls, lists, uploads and deletes of uploads meet a 429, a 5xx, a dropped connection, a
reset after the prediction was created, an unreadable body, a failed or aborted run or a short
output. Batches are uploaded only when they compress to over 256 KB: ``--batch-size 2000`` does,
the default 500 (~90 KB, a data URI) does not.

The digits stream in lazily (a generator of 1,000-digit arrays) and results are consumed as
``classify_iter`` yields them, so memory should not grow with the run. Checked at the end:

* nothing lost: exactly one result per input, indices 0..N-1 in order, each a digit or an error;
* every digit answered is right (the fake's model is an oracle: sum of pixels mod 10);
* no request_id turned into two predictions, and nothing left running on the server;
* every uploaded file left undeleted was warned about: the files left equal the failed deletes
  named in a warning plus the uploads the fake stored but answered with a failure
  (``500_after``, ``drop_after``), and the client's "may have stored" warnings count at least those;
* RSS sampled every 0.25 s: start (after the first 5 %), end, peak, and ``ru_maxrss``; threads
  and open file descriptors before and after, and the objects left in reference cycles at the end
  (``gc.collect()``'s count).

Backoff is shortened (base 20 ms, cap 0.5 s, Retry-After capped at 0.2 s) so the faults cost
seconds, not minutes; every retry path still runs. Prints a table for bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "r8_soak-token-0123456789"
CHUNK = 1000  # digits per array the input generator yields
# endpoint -> (fault, relative weight): the mix drawn when a call is due a fault
FAULTS = {
    "create": [
        ("429", 4),
        ("500_before", 2),
        ("reset_before", 2),
        ("500_after", 2),
        ("reset_after", 2),
        ("malformed_after", 1),
        ("fail", 1),
        ("abort", 1),
        ("short_output", 1),
    ],
    "get": [("drop", 1), ("500", 1)],
    "list": [("500", 1)],
    "files": [("500", 1), ("500_after", 1), ("drop_after", 1)],
    "delete_file": [("500", 1), ("drop", 1)],
}
NO_FAULT = "none"  # any name the fake does not know is a normal answer


def fault_schedule(rate: float, calls: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    schedule = {}
    for endpoint, mix in FAULTS.items():
        names, weights = zip(*mix, strict=True)
        schedule[endpoint] = [rng.choices(names, weights)[0] if rng.random() < rate else NO_FAULT for _ in range(calls)]
    return schedule


# ----------------------------------------------------------------------------- the fake, in a child process


def serve_fake(rate: float, calls: int, seed: int) -> None:
    """Child process: run the fake with the fault schedule; answer 'stats' on stdin with a JSON line."""
    from tests.fakes.replicate_server import FakeReplicate

    fake = FakeReplicate(token=TOKEN, max_wait=5.0)
    schedule = fault_schedule(rate, calls, seed)
    for endpoint, faults in schedule.items():
        for fault in faults:
            fake.inject(endpoint, fault)
    print(fake.url, flush=True)
    for line in sys.stdin:
        if line.strip() != "stats":
            continue
        time.sleep(1.0)  # let cancelled predictions reach a terminal state
        consumed = {}
        for endpoint, faults in schedule.items():
            left = len(fake.faults.get(endpoint) or ())
            consumed[endpoint] = Counter(f for f in faults[: len(faults) - left] if f != NO_FAULT)
        per_request = fake.predictions_per_request_id()
        report = {
            "predictions": len(fake.predictions),
            "duplicated_request_ids": sum(1 for n in per_request.values() if n > 1),
            "unfinished": len(fake.unfinished()),
            "cancels": len(fake.cancels),
            "uploads": len(fake.file_info),
            "files_left": len(fake.files),
            "unanswered_uploads": fake.unanswered_uploads,
            "requests": len(fake.requests),
            "faults": {endpoint: dict(counts) for endpoint, counts in consumed.items()},
            "token_in_url_or_body": sum(1 for r in fake.requests if TOKEN in r["path"] or TOKEN.encode() in r["body"]),
        }
        print(json.dumps(report), flush=True)
    fake.close()


# ----------------------------------------------------------------------------- the client side


def digit_pool(n: int = 512) -> np.ndarray:
    from tests.conftest import stroke_digits

    return stroke_digits(n, seed=99)[0]


def stream(pool: np.ndarray, total: int) -> Iterator[np.ndarray]:
    """``total`` digits as arrays of CHUNK, drawn from ``pool`` in a rolling order (never all in memory)."""
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        yield pool[(np.arange(sent, sent + n) * 7) % len(pool)]
        sent += n


def expected_labels(pool: np.ndarray, total: int) -> np.ndarray:
    from tests.fakes.replicate_server import oracle

    labels = oracle(pool).argmax(axis=1)
    return labels[(np.arange(total) * 7) % len(pool)]


class RssSampler(threading.Thread):
    def __init__(self, progress: list[int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.progress = progress
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []  # seconds, digits done, RSS MB
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            rss = self.process.memory_info().rss / 2**20
            self.samples.append((time.perf_counter() - self.t0, self.progress[0], rss))


class WarningCounter(logging.Handler):
    """Counts the log records whose message contains ``text``; with ``counted``, adds up each
    record's first argument (how many files it is about) instead of counting 1."""

    def __init__(self, text: str, counted: bool = False) -> None:
        super().__init__(logging.WARNING)
        self.text, self.counted, self.count = text, counted, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            first = record.args[0] if isinstance(record.args, tuple) and record.args else None
            self.count += first if self.counted and isinstance(first, int) else 1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digits", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--max-concurrency", type=int, default=4)
    p.add_argument("--fault-rate", type=float, default=0.1, help="share of calls per endpoint that meet a fault")
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    calls = 4 * args.digits // args.batch_size + 1000  # more scheduled calls than the run will make
    if args.serve_fake:
        serve_fake(args.fault_rate, calls, args.seed)
        return

    import random as _random

    from digitcloud import Client
    from digitcloud.retrying import RetryPolicy

    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake", f"--digits={args.digits}", f"--batch-size={args.batch_size}",
         f"--fault-rate={args.fault_rate}", f"--seed={args.seed}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    url = child.stdout.readline().strip()
    os.environ.update(REPLICATE_API_TOKEN=TOKEN, REPLICATE_BASE_URL=url)

    pool = digit_pool()
    expected = expected_labels(pool, args.digits)
    threads_before, fds_before = threading.active_count(), open_fds()
    progress = [0]
    sampler = RssSampler(progress)
    outcomes = np.full(args.digits, -2, dtype=np.int8)  # -2 never answered, -1 error, else the digit
    errors: Counter[str] = Counter()
    out_of_order = 0
    client = Client(
        model="owner/digitcloud", backend="cloud", batch_size=args.batch_size, max_concurrency=args.max_concurrency,
        timeout=60,
    )  # fmt: skip
    client._cloud.policy = RetryPolicy(  # type: ignore[union-attr]
        base_delay=0.02, max_delay=0.5, retry_after_cap=0.2, rng=_random.Random(args.seed)
    )
    undeleted_warnings = WarningCounter("could not delete uploaded file")
    maybe_stored_warnings = WarningCounter("may have stored a file whose id is unknown", counted=True)
    logging.getLogger("digitcloud").addHandler(undeleted_warnings)
    logging.getLogger("digitcloud").addHandler(maybe_stored_warnings)
    sampler.start()
    t0 = time.perf_counter()
    with client:
        for i, result in enumerate(client.classify_iter(stream(pool, args.digits))):
            if result.index != i:
                out_of_order += 1
            if result.error is not None:
                outcomes[i] = -1
                errors[type(result.error).__name__] += 1
            else:
                outcomes[i] = result.digit
            progress[0] = i + 1
    elapsed = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    time.sleep(0.5)
    threads_after, fds_after = threading.active_count(), open_fds()
    # garbage the run left in reference cycles: only the cyclic gc frees it, whatever it holds (arrays,
    # sockets) stays until then, and the heap it was on may stay with the process after
    cycles = gc.collect()
    fds_after_gc = open_fds()
    child.stdin.write("stats\n")
    child.stdin.flush()
    server = json.loads(child.stdout.readline())
    child.stdin.close()
    child.wait(timeout=30)

    answered = outcomes >= 0
    wrong = int((outcomes[answered] != expected[answered]).sum())
    never = int((outcomes == -2).sum())
    samples = sampler.samples
    warm = next((rss for _, done, rss in samples if done >= args.digits * 0.05), samples[0][2])
    end = samples[-1][2]
    peak = max(rss for *_, rss in samples)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    injected = sum(sum(c.values()) for c in server["faults"].values())

    print(f"digits: {args.digits:,} in {elapsed:.1f} s = {args.digits / elapsed:,.0f} digits/s "
          f"(batch {args.batch_size}, {args.max_concurrency} in flight)")  # fmt: skip
    print(f"results: {progress[0]:,}, out of order {out_of_order}, never answered {never}, "
          f"answered {int(answered.sum()):,} (wrong {wrong}), errors {dict(errors)}")  # fmt: skip
    print(f"server: {server['predictions']} predictions, {server['requests']:,} requests, "
          f"{server['cancels']} cancels, duplicated request_ids {server['duplicated_request_ids']}, "
          f"unfinished {server['unfinished']}, token in a URL or body {server['token_in_url_or_body']}")  # fmt: skip
    print(f"faults met: {injected} — {json.dumps(server['faults'])}")
    print(f"uploads: {server['uploads']}, left undeleted {server['files_left']} (a failed delete or an upload "
          f"stored but answered with a failure leaves one): failed deletes warned {undeleted_warnings.count}, "
          f"uploads stored unanswered {server['unanswered_uploads']}, "
          f"warned as maybe stored {maybe_stored_warnings.count}")  # fmt: skip
    print(f"RSS MB: start (after 5 %) {warm:.1f}, end {end:.1f}, peak sampled {peak:.1f}, ru_maxrss {maxrss:.1f}")
    print(f"threads {threads_before} -> {threads_after}; open fds {fds_before} -> {fds_after} "
          f"({fds_after_gc} after gc.collect(), which found {cycles:,} unreachable objects)")  # fmt: skip
    print("RSS over the run (digits done: MB):")
    for k in range(11):
        target = args.digits * k / 10
        _, done, rss = min(samples, key=lambda s: abs(s[1] - target))
        print(f"  {done:>9,}: {rss:7.1f}")
    lost = progress[0] != args.digits or out_of_order or never
    unwarned = server["files_left"] != undeleted_warnings.count + server["unanswered_uploads"]
    unwarned = unwarned or maybe_stored_warnings.count < server["unanswered_uploads"]
    leaks = server["duplicated_request_ids"] or server["unfinished"] or server["token_in_url_or_body"] or unwarned
    if lost or wrong or leaks:
        print("INVARIANT VIOLATED")
        sys.exit(1)


if __name__ == "__main__":
    main()

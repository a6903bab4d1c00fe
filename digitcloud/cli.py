"""The ``digitcloud`` command: ``digitcloud classify PATHS… [--csv FILE] [--format …] [-o OUT]``.

Exit status: 0 when at least one image was classified, 1 when none could be, 2 for usage errors.
Per-item errors are reported (in the output and on stderr) but are not fatal.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from digitcloud.client import Client
from digitcloud.config import BACKENDS
from digitcloud.errors import ConfigError, DigitCloudError
from digitcloud.types import Prediction

FORMATS = ("table", "json", "csv", "kaggle")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="digitcloud", description="Classify handwritten digit images.")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser(
        "classify",
        help="classify images, folders, globs or a Kaggle CSV",
        description="Classify digit images: files, folders (their image files), globs, http(s) URLs.",
    )
    classify.add_argument("paths", nargs="*", help="image files, folders, glob patterns or URLs")
    classify.add_argument(
        "--csv",
        action="append",
        default=[],
        metavar="FILE",
        help="a Kaggle Digit Recognizer CSV (pixel0..pixel783, optional label column)",
    )
    classify.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default), json, csv, or kaggle (ImageId,Label submission)",
    )
    classify.add_argument("-o", "--output", metavar="OUT", help="write results here instead of stdout")
    classify.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="auto (default: the cloud if configured, else local), cloud or local",
    )
    classify.add_argument(
        "--model",
        default=None,
        metavar="OWNER/NAME[:VERSION]",
        help="a Replicate model running predict.py (needs REPLICATE_API_TOKEN)",
    )
    classify.add_argument("--deployment", default=None, metavar="OWNER/NAME", help="a Replicate deployment")
    classify.add_argument(
        "--cog-url",
        default=None,
        metavar="URL",
        help="a self-hosted Cog server running predict.py, e.g. http://gpu-box:5000",
    )
    classify.add_argument("--batch-size", type=int, default=None, help="digits per batch (default 256)")
    classify.add_argument("--max-concurrency", type=int, default=None, help="cloud predictions in flight (4)")
    classify.add_argument("--timeout", type=float, default=None, help="seconds per cloud batch (120)")
    classify.add_argument(
        "--public-urls-only",
        dest="private_urls",
        action="store_false",
        default=None,
        help="download URLs only from public addresses, redirects included (DIGITCLOUD_PRIVATE_URLS=0)",
    )
    progress = classify.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show a progress bar on stderr"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    release = commands.add_parser(
        "release",
        help="resolve a Replicate model's latest version and check it speaks wire contract v1",
        description="After `cog push`: find the model's latest version, check its inputs, print how to pin it.",
    )
    release.add_argument("model", metavar="OWNER/NAME")
    return parser


def release_main(model: str) -> int:
    from digitcloud.release import latest_release

    try:
        found = latest_release(model)
    except DigitCloudError as exc:
        print(f"digitcloud: error: {exc}", file=sys.stderr)
        return 1
    print(f"{found.model}: latest version {found.version} (created {found.created_at})")
    if found.missing_inputs:
        print(
            f"digitcloud: this version lacks the inputs {', '.join(found.missing_inputs)} of wire contract v1: "
            "was predict.py pushed?",
            file=sys.stderr,
        )
        return 1
    if found.required_inputs:
        print(
            f"digitcloud: this version requires the inputs {', '.join(found.required_inputs)}, so it refuses "
            "every request (each carries image or digits, not both): push a predict.py that declares them "
            "Optional[...] = Input(default=None)",
            file=sys.stderr,
        )
        return 1
    print("inputs image, digits, request_id: wire contract v1")
    print(f"pin it:  export DIGITCLOUD_MODEL={found.pinned}")
    print(f'or:      classify(images, model="{found.pinned}")')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "release":
        return release_main(args.model)
    if not args.paths and not args.csv:
        parser.error("classify needs at least one path or --csv FILE")
    if args.format == "kaggle" and (args.paths or len(args.csv) != 1):
        parser.error("--format kaggle takes one --csv FILE and no paths (its ImageId is that file's row number)")
    if args.output:
        try:  # before any work: results that cannot be written are work thrown away
            open(args.output, "a", encoding="utf-8").close()
        except OSError as exc:
            print(f"digitcloud: error: cannot write {args.output!r}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    try:
        with Client(
            backend=args.backend,
            model=args.model,
            deployment=args.deployment,
            cog_url=args.cog_url,
            batch_size=args.batch_size,
            max_concurrency=args.max_concurrency,
            timeout=args.timeout,
            private_urls=args.private_urls,
        ) as client:
            inputs = list(args.paths) + list(args.csv)
            show_progress = args.progress if args.progress is not None else sys.stderr.isatty()
            results = client.classify(inputs, progress=show_progress)
    except ConfigError as exc:
        print(f"digitcloud: error: {exc}", file=sys.stderr)
        return 2  # a usage error, like a bad option
    except DigitCloudError as exc:
        print(f"digitcloud: error: {exc}", file=sys.stderr)
        return 1
    assert isinstance(results, list)
    if not results:
        print("digitcloud: error: no images found in the inputs given", file=sys.stderr)

    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            write_results(results, args.format, out)
    else:
        write_results(results, args.format, sys.stdout)

    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"digitcloud: {result.error}", file=sys.stderr)
    done = len(results) - len(failed)
    if failed or args.output:
        print(f"digitcloud: {done} classified, {len(failed)} failed", file=sys.stderr)
    return 0 if done else 1


def write_results(results: list[Prediction], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump([_as_dict(r) for r in results], out, indent=1)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["index", "source", "digit", "confidence", "backend", "error"])
        for r in results:
            confidence = f"{r.confidence:.6f}" if r.confidence is not None else ""
            writer.writerow([r.index, r.source, _blank(r.digit), confidence, _blank(r.backend), _blank(r.error)])
    elif fmt == "kaggle":
        # Kaggle's submission format: ImageId is the 1-based row number of the input. A row that
        # failed is left out (and reported on stderr) rather than given an invented label.
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["ImageId", "Label"])
        for r in results:
            if r.ok:
                writer.writerow([r.index + 1, r.digit])
    else:
        out.write(_table(results))


def _blank(value: object) -> str:
    return "" if value is None else str(value)


def _as_dict(r: Prediction) -> dict[str, object]:
    if r.error is not None:
        return {"index": r.index, "source": r.source, "error": str(r.error)}
    return {
        "index": r.index,
        "source": r.source,
        "digit": r.digit,
        "confidence": r.confidence,
        "probabilities": list(r.probabilities or ()),
        "backend": r.backend,
    }


def _table(results: list[Prediction]) -> str:
    width = min(60, max([len(r.source) for r in results] + [6]))
    buf = io.StringIO()
    buf.write(f"{'source':<{width}}  digit  confidence  backend\n")
    for r in results:
        source = r.source if len(r.source) <= width else "…" + r.source[-(width - 1) :]
        if r.ok:
            buf.write(f"{source:<{width}}  {r.digit:>5}  {r.confidence:>10.4f}  {r.backend}\n")
        else:
            reason = getattr(r.error, "reason", None) or str(r.error)
            buf.write(f"{source:<{width}}  {'-':>5}  {'-':>10}  error: {reason}\n")
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())

"""``python -m scripts.demo [--photos DIR] [--out ./demo-output] [--items N] [--size small|medium]``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from scripts.demo.album_run import AlbumResult, run_album
from scripts.demo.albums import SIZES, plans
from scripts.demo.client import Api, ApiError
from scripts.demo.stack import EmbeddedStack, StackConfig, StackError
from scripts.demo.summary import TINY_MODEL_NOTE, as_json, table
from scripts.playground import playground_url
from server.config import Settings

START_TIMEOUT_S = 900.0
"""The first start exports the model (about a minute for the tiny one; longer for real weights)."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__)
    parser.add_argument("--photos", type=Path, help="your photos (see scripts/demo/albums.py); default: synthetic")
    parser.add_argument(
        "--out", type=Path, default=Path("demo-output"), help="where results go (default ./demo-output)"
    )
    parser.add_argument("--items", type=int, default=4, help="synthetic photos per album (default 4)")
    parser.add_argument("--size", choices=sorted(SIZES), default="medium", help="synthetic photo size")
    parser.add_argument("--workers", type=int, default=2, help="pipeline workers in the server (default 2)")
    parser.add_argument("--data-dir", type=Path, help="server data dir to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be at least 1")
    return args


def _say(text: str = "") -> None:
    print(text, flush=True)


def _run(args: argparse.Namespace, stack: EmbeddedStack) -> tuple[list[AlbumResult], dict[str, object]]:
    _say(f"starting the stack (logs: {stack.config.log_path}); the first run exports the tiny SAM3 model")
    started = time.monotonic()
    health = stack.wait_healthy(START_TIMEOUT_S)
    _say(f"stack ready in {time.monotonic() - started:.1f} s at {stack.base_url}: model {health.get('model')}")
    meaningful = bool(health.get("model_meaningful"))
    if not meaningful:
        _say("NOTE: " + TINY_MODEL_NOTE)
    api = Api(stack.base_url)
    try:
        user = api.sign_in()
        _say(f"signed in anonymously: plan {user['plan']}, {user['credits']} credits")
        albums, notes = plans(args.photos, args.items, args.size, int(api.call("me", "GET", "/me")["max_batch"]))
        for note in notes:
            _say("note: " + note)
        warning = None if meaningful else "tiny random-weight SAM3: masks are not meaningful"
        results = []
        for plan in albums:
            _say(f"\n{plan.name} album: {len(plan.photos)} photo(s) from {plan.source}, preset {plan.preset}")
            results.append(run_album(api, plan, args.out / plan.name, warning=warning))
        return results, health
    finally:
        api.close()


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    temp = None if args.data_dir else Path(tempfile.mkdtemp(prefix="s3-demo-"))
    data_dir = args.data_dir or temp
    assert data_dir is not None
    stack = EmbeddedStack(StackConfig(data_dir=data_dir, log_path=args.out / "server.log", workers=args.workers))
    code = 0
    try:
        stack.start()
        results, health = _run(args, stack)
    except ApiError as e:
        _say(f"\nFAILED at step '{e.step}' (HTTP {e.status}); the server answered:")
        _say(json.dumps(e.envelope, indent=2) if not isinstance(e.envelope, str) else e.envelope)
        code = 1
    except (StackError, FileNotFoundError, OSError) as e:
        _say(f"\nFAILED: {e}")
        code = 1
    except KeyboardInterrupt:
        _say("\ninterrupted")
        code = 130
    finally:
        _say("\nstopping the stack (SIGTERM)")
        exit_code = stack.stop()
        if exit_code not in (0, None):
            _say(f"the server exited with code {exit_code}; last log lines:\n{stack.log_tail()}")
            code = code or 1
        elif code:
            _say(f"last server log lines:\n{stack.log_tail()}")
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    if code:
        return code

    _say("\n" + table(results))
    summary = as_json(results, health)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    _say("\noutputs:")
    for r in results:
        _say(f"  {r.set_path}  ({summary_renditions(summary, r.plan.name)} renditions + manifest.json)")
        _say(f"  {r.sheet_path}")
    _say(f"  {args.out / 'summary.json'}")
    _say(
        "\nTry the five stages on your own photos in a browser: run `make playground`, then open "
        f"{playground_url(Settings())} (the stack keeps running until Ctrl-C; docs/playground.md)."
    )
    if not summary["model_meaningful"]:
        _say("\n" + TINY_MODEL_NOTE)
    return 0


def summary_renditions(summary: dict[str, object], name: str) -> object:
    albums = summary["albums"]
    assert isinstance(albums, list)
    return next(a["renditions_in_set"] for a in albums if a["name"] == name)


if __name__ == "__main__":
    sys.exit(main())

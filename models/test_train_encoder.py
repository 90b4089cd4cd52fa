#!/usr/bin/env python3
"""Tests of train_encoder.py's command line: the output folder is required,
and progress (stage lines, elapsed time, ETA, the SVD's loss) goes to
standard error while the results stay on standard output.

Run from the repository root (needs numpy and onnx, like the script)::

    python3 -m unittest models/test_train_encoder.py
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_encoder  # noqa: E402


def small_log(path: str) -> None:
    """40 users in two taste groups over 30 items, 8 interactions each."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("user_id,item_id,ts\n")
        for u in range(40):
            base = 0 if u % 2 == 0 else 15
            for t in range(8):
                fh.write(f"u{u},{base + (u * 7 + t * 2) % 15},{t}\n")


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = train_encoder.main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TrainEncoderCli(unittest.TestCase):
    def setUp(self):
        self.every = train_encoder.Progress.every

    def tearDown(self):
        train_encoder.Progress.every = self.every

    def test_the_output_folder_must_be_given(self):
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log.csv")
            small_log(log)
            code, out, err = run(["--interactions", log])
            self.assertEqual(code, 2)
            self.assertIn("--out-dir", err)
            self.assertEqual(os.listdir(tmp), ["log.csv"])

    def test_progress_goes_to_stderr_and_files_only_to_the_output_folder(self):
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log.csv")
            small_log(log)
            out_dir = os.path.join(tmp, "new", "models")
            code, out, err = run([
                "--interactions", log, "--time-col", "ts", "--dim", "4",
                "--name", "tiny", "--out-dir", out_dir, "--progress-every", "0",
            ])
            self.assertEqual(code, 0, err)
            self.assertEqual(sorted(os.listdir(out_dir)),
                             ["tiny-bag.onnx", "tiny-metrics.json", "tiny-seq.onnx"])
            self.assertEqual(sorted(os.listdir(tmp)), ["log.csv", "new"])
            # Results on stdout, progress on stderr only.
            self.assertIn("held-out evaluation", out)
            self.assertNotIn("[train_encoder]", out)
            for needle in ("reading log.csv", "co-occurrence (user) (40 users) ...",
                           "co-occurrence (user): done in", "exact SVD of the 30 x 30 PPMI matrix: done in",
                           "reconstruction loss", "ranking items for every user (model)", "ETA",
                           "final model: training on all interactions", "export to"):
                self.assertIn(needle, err)
            self.assertTrue(all(line.startswith("[train_encoder] ") for line in err.splitlines()), err)

    def test_no_progress_when_asked(self):
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log.csv")
            small_log(log)
            code, out, err = run(["--interactions", log, "--dim", "4", "--no-eval",
                                  "--out-dir", tmp, "--progress-every", "-1"])
            self.assertEqual(code, 0)
            self.assertEqual(err, "")

    def test_eta_is_the_remaining_share_of_the_elapsed_time(self):
        clock = FakeClock()
        old = train_encoder.time.monotonic
        train_encoder.time.monotonic = clock
        try:
            train_encoder.Progress.every = 5.0
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                p = train_encoder.Progress("stage", 100, "users")
                clock.now = 4.0
                p.update(10)  # within 5 s of the start: no line
                clock.now = 10.0
                p.update(25)
                clock.now = 200.0
                p.update(50)
                clock.now = 4000.0
                p.done("note")
            self.assertEqual(err.getvalue().splitlines(), [
                "[train_encoder] stage (100 users) ...",
                "[train_encoder] stage: 25/100 users (25 %), 10.0 s elapsed, ETA 30.0 s",
                "[train_encoder] stage: 50/100 users (50 %), 3 min 20 s elapsed, ETA 3 min 20 s",
                "[train_encoder] stage: done in 1 h 06 min; note",
            ])
        finally:
            train_encoder.time.monotonic = old


if __name__ == "__main__":
    unittest.main()

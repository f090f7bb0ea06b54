#!/usr/bin/env python3
"""scripts/prepare_fortunes.py on a tiny unpacked tree: overstrike and control characters removed,
entries shared between topics dropped, duplicates merged, stratified deterministic splits, stats.json.

    python3 tests/test_prepare_fortunes.py      (run by ctest as prepare_fortunes_script)
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "prepare_fortunes.py")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import prepare_fortunes as pf  # noqa: E402


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_topic(root, name, entries, encoding="utf-8"):
    d = os.path.join(root, pf.FORTUNE_DIR)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write("\n%\n".join(entries).encode(encoding) + b"\n%\n")


class PrepareFortunes(unittest.TestCase):
    def test_clean_strips_overstrike_and_controls(self):
        self.assertEqual(pf.clean("_\bb_\bo_\bl_\bd and N\bNO\bO\x07"), "bold and NO")
        self.assertIsNone(pf.clean("  \n\t "))
        self.assertEqual(pf.tokenize("Don't PANIC -- Adams."), "don ' t panic - - adams .")

    def test_corpus(self):
        with tempfile.TemporaryDirectory() as tmp:
            tree = os.path.join(tmp, "tree")
            sci = [f"Science fact number {i}." for i in range(20)] + ["Shared entry.", "Science fact number 3."]
            pol = [f"Politics quote {i} -- someone" for i in range(10)] + ["Shared entry.", "Caf\xe9 politics"]
            write_topic(tree, "science", sci)
            write_topic(tree, "politics", pol, encoding="latin-1")
            out = os.path.join(tmp, "out")
            for run in range(2):  # deterministic: the second run writes the same files
                subprocess.run([sys.executable, SCRIPT, "--out", out, "--deb-dir", tree,
                                "--topics", "science,politics"], check=True, capture_output=True)
                rows = {s: read(os.path.join(out, f"{s}.tsv")) for s in ("train", "valid", "test")}
                if run == 0:
                    first = rows
            self.assertEqual(first, rows)
            stats = json.loads(read(os.path.join(out, "stats.json")))
            self.assertEqual(stats["dropped_shared_between_topics"], 1)
            counts = {s: v["per_topic"] for s, v in stats["splits"].items()}
            self.assertEqual(sum(c["science"] for c in counts.values()), 20)  # 22 entries - 1 duplicate - 1 shared
            self.assertEqual(sum(c["politics"] for c in counts.values()), 11)
            self.assertEqual((counts["valid"]["science"], counts["test"]["science"]), (2, 2))
            self.assertEqual((counts["valid"]["politics"], counts["test"]["politics"]), (1, 1))
            everything = "".join(rows.values())
            self.assertNotIn("shared entry", everything)
            self.assertIn("politics\tcafé politics\n", everything)
            self.assertEqual(read(os.path.join(out, "labels.txt")), "science\npolitics\n")
            for line in everything.splitlines():
                label, text = line.split("\t")
                self.assertIn(label, ("science", "politics"))
                self.assertTrue(text)

    def test_missing_topic_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_topic(tmp, "science", ["a."])
            r = subprocess.run([sys.executable, SCRIPT, "--out", os.path.join(tmp, "o"), "--deb-dir", tmp,
                                "--topics", "science,nosuch"], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("nosuch", r.stderr)


if __name__ == "__main__":
    unittest.main()

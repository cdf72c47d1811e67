#!/usr/bin/python3
"""Per-suite test counts for tools/test, read from the runners' own reports
rather than from their console output.

  test_counts.py junit FILE...           pytest --junitxml reports
  test_counts.py meson TESTLOG GTESTDIR  meson's testlog.json plus the
                                         GoogleTest XML each unit program
                                         wrote (GTEST_OUTPUT=xml:GTESTDIR/)

Prints "PASSED FAILED SKIPPED" on stdout and the names of failed cases on
stderr. Unit tests count GoogleTest cases; a program that failed without a
failed case in its XML (a crash, a timeout, a sanitizer abort after the
last case) counts as one more failure, so nothing that failed is lost.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def junit_counts(paths: list[str]) -> tuple[int, int, int, list[str]]:
    passed = failed = skipped = 0
    names: list[str] = []
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as e:
            failed += 1
            names.append(f"{path}: unreadable report ({e})")
            continue
        for case in root.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                names.append(name)
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped, names


def gtest_counts(path: Path) -> tuple[int, int, int, list[str]]:
    passed = failed = skipped = 0
    names: list[str] = []
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name', '')}"
        if case.find("failure") is not None:
            failed += 1
            names.append(name)
        elif case.get("result") == "skipped" or case.get("status") == "notrun" or \
                case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, names


def meson_counts(testlog: str, gtest_dir: str) -> tuple[int, int, int, list[str]]:
    passed = failed = skipped = 0
    names: list[str] = []
    try:
        lines = Path(testlog).read_text().splitlines()
    except OSError as e:
        return 0, 1, 0, [f"no meson test log ({e})"]
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        name, result = t.get("name", "?"), t.get("result", "?")
        xml = Path(gtest_dir) / f"test_{name}.xml"
        if not xml.exists():
            # Test programs are test_<name>; fall back to any XML named for it.
            cands = list(Path(gtest_dir).glob(f"*{name}*.xml"))
            xml = cands[0] if len(cands) == 1 else xml
        case_failed = 0
        if xml.exists():
            try:
                p, f, s, n = gtest_counts(xml)
            except (OSError, ET.ParseError):
                p = f = s = 0
                n = []
            passed += p
            failed += f
            skipped += s
            case_failed = f
            names += [f"{name}: {x}" for x in n]
            if result in ("OK", "EXPECTEDFAIL"):
                continue
            if result == "SKIP" and p + f + s == 0:
                skipped += 1
                continue
        elif result == "OK":
            passed += 1
            continue
        elif result == "SKIP":
            skipped += 1
            continue
        if case_failed == 0:
            failed += 1
            names.append(f"{name}: {result}")
    return passed, failed, skipped, names


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "junit":
        p, f, s, names = junit_counts(argv[1:])
    elif len(argv) == 3 and argv[0] == "meson":
        p, f, s, names = meson_counts(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for n in names:
        print(f"  FAILED {n}", file=sys.stderr)
    print(p, f, s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The shape of the code: the rooms a newcomer cannot hold (issue 25's limits).

    python benchmarks/shape.py [--most 10]

Prints the largest classes and functions of `watcherd/` by lines (limits: no class
over 300, no function over 80) and the functions above a cyclomatic complexity of 20
(McCabe, as ruff's C901 counts it), worst first, and how many break each limit.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"class": 300, "function": 80, "complexity": 20}


def sizes() -> list[tuple[str, str, int]]:
    """(kind, where, lines) of every class and function in watcherd/."""
    out = []
    for path in sorted((ROOT / "watcherd").rglob("*.py")):
        tree = ast.parse(path.read_text())
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                kind = "class"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                kind = "function"
            else:
                continue
            lines = node.end_lineno - node.lineno + 1
            out.append((kind, f"{rel}:{node.lineno} {node.name}", lines))
    return out


def complexity() -> list[tuple[str, int]]:
    """(where, complexity) of every function, worst first, from ruff's C901 (McCabe:
    branches and loops; radon also counts boolean operators, so its figures run
    higher)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    proc = subprocess.run(
        [ruff, "check", "--select", "C901", "--output-format", "json",
         "--config", "lint.mccabe.max-complexity = 0",
         str(ROOT / "watcherd")],
        capture_output=True, text=True,
    )  # fmt: skip
    out = []
    for item in json.loads(proc.stdout or "[]"):
        rel = Path(item["filename"]).relative_to(ROOT)
        number = int(item["message"].split("(")[-1].split()[0].rstrip(")"))
        out.append((f"{rel}:{item['location']['row']} {item['message'].split('`')[1]}", number))
    return sorted(out, key=lambda x: -x[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--most", type=int, default=10)
    args = parser.parse_args()
    found = sizes()
    for kind in ("class", "function"):
        ranked = sorted((x for x in found if x[0] == kind), key=lambda x: -x[2])
        over = sum(1 for x in ranked if x[2] > LIMITS[kind])
        print(f"{kind}es over {LIMITS[kind]} lines: {over}" if kind == "class"
              else f"functions over {LIMITS[kind]} lines: {over}")  # fmt: skip
        for _, where, lines in ranked[: args.most]:
            print(f"  {lines:5d}  {where}")
    complex_ = complexity()
    over = sum(1 for _, number in complex_ if number > LIMITS["complexity"])
    print(f"functions above complexity {LIMITS['complexity']}: {over}")
    for where, number in complex_[: args.most]:
        print(f"  {number:5d}  {where}")


if __name__ == "__main__":
    main()

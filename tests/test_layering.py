"""The direction of dependence: recon is the bottom and never imports mriqa; no two modules import each other;
scoring a photo needs no sigpy.

Checked twice: statically (no ``import mriqa`` anywhere in recon/, docstrings aside) and by running code in a
subprocess whose import system refuses the forbidden package.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == {pkg!r} or name.startswith({pkg!r} + "."):
                raise ImportError(f"{{name}} is blocked in this test")
    sys.meta_path.insert(0, Block())
""")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_recon_source_never_imports_mriqa():
    offenders = [f"{p.relative_to(REPO)}: {name}" for p in sorted((REPO / "recon").rglob("*.py"))
                 for name in _imports(p) if name == "mriqa" or name.startswith("mriqa.")]
    assert not offenders, offenders


def test_recon_trains_dc_and_ssdu_without_mriqa(tmp_path):
    code = BLOCK.format(pkg="mriqa") + textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from examples.tiny_data import make_tiny_dataset
        from recon.train import train
        root = make_tiny_dataset({str(tmp_path / 'data')!r}, size=32, coils=4, train_files=1, val_files=1)
        for mode in ("dc", "ssdu"):
            cfg = {{"name": mode, "out_dir": {str(tmp_path)!r} + "/" + mode, "arch": "modl",
                   "data": {{"root": str(root), "train_split": "train", "val_split": "val",
                            "accelerations": [4.0], "mask_types": ["random"], "calib_width": 16,
                            "val_accelerations": [], "cache_dir": False}},
                   "model": {{"num_unrolls": 1, "cg_iters": 2, "channels": 4}},
                   "train": {{"mode": mode, "batch_size": 1, "stages": [{{"num_unrolls": 1, "steps": 2}}],
                             "val_every": 100, "ckpt_every": 1}}}}
            trainer = train(cfg, progress=False)
            assert trainer.step == 2 and trainer.history, mode
        assert not any(m == "mriqa" or m.startswith("mriqa.") for m in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_scoring_a_photo_needs_no_sigpy(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    code = BLOCK.format(pkg="sigpy") + textwrap.dedent(f"""
        from mriqa.cli import main
        assert main(["score", {str(tmp_path / 'photo.png')!r}, "--json", {str(tmp_path / 'out.json')!r}]) == 0
        assert "sigpy" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    assert (tmp_path / "out.json").stat().st_size > 0


def _module_graph() -> dict[str, set[str]]:
    """Module -> the repo modules it imports (module level and inside functions; packages' ``__init__`` left
    out: they only hand names on)."""
    files = {".".join(p.relative_to(REPO).with_suffix("").parts): p
             for pkg in ("recon", "mriqa") for p in (REPO / pkg).rglob("*.py") if p.name != "__init__.py"}
    graph = {}
    for name, path in files.items():
        package = name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: ``from .x import y`` inside package ``a.b`` is ``a.b.x``
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                targets.add(base)
                targets |= {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def test_no_two_modules_import_each_other():
    """The direction of dependence inside each package too: no import circle (a helper two modules need
    lives in the lower one, or below both)."""
    graph = _module_graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert len(graph) > 100 and not circles, circles

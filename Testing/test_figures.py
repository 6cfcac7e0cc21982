"""The one figure factory: private Agg figures, PNG bytes of the asked size, and no pyplot anywhere in the library."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

from PIL import Image

from LesionXAILib.figures import new_figure, png_bytes

LIBRARY = Path(__file__).resolve().parents[1] / "LesionXAILib"


def test_new_figure_renders_a_png_of_its_size():
    fig = new_figure(3.0, 2.0, dpi=50)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    png = png_bytes(fig)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (150, 100)


def test_no_library_module_imports_pyplot():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n.startswith("matplotlib.pyplot") or n == "pylab" for n in names):
                offenders.append(f"{path.relative_to(LIBRARY.parent)}:{node.lineno}")
    assert offenders == []


def test_cohort_figures_stay_out_of_pyplots_state():
    # matplotlib itself may import pyplot (boxplot reads every rcParam, and reading 'backend' loads pyplot),
    # but no figure may be registered in pyplot's global figure manager
    code = (
        "import sys, numpy as np\n"
        "from LesionXAILib.cohort.plots import bar_png, curves_png, group_distribution_png\n"
        "group_distribution_png({'TP': np.arange(5.0), 'FN': np.ones(3)}, 't', 'y')\n"
        "x = np.linspace(0, 1, 5); curves_png({'a': (x, x, 0 * x)}, 't', 'y'); bar_png(['a'], [1.0], 't', 'y')\n"
        "plt = sys.modules.get('matplotlib.pyplot')\n"
        "print([] if plt is None else plt.get_fignums())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=LIBRARY.parent).stdout.strip()  # fmt: skip
    assert out == "[]"

"""The card's folders install under the mmrec. namespace, in the wheel and in the editable install."""

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {
    "mmrec.encoders": "encoders",
    "mmrec.graphs": "graphs",
    "mmrec.quantization": "quantization",
    "mmrec.crossdomain": "crossdomain",
    "mmrec.pipelines": "pipelines",
}


@pytest.mark.parametrize("name,folder", sorted(SUBPACKAGES.items()))
def test_installed_package_imports_every_subpackage_from_its_folder(name, folder):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve() == ROOT / folder / "__init__.py"


def test_generic_top_level_names_do_not_import_outside_the_repo(tmp_path):
    code = f"import importlib.util as u; print([n for n in {list(SUBPACKAGES.values())!r} if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_wheel_holds_only_the_mmrec_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("mmrec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"mmrec"}
    for name, folder in SUBPACKAGES.items():
        sources = {p.name for p in (ROOT / folder).glob("*.py")}
        packed = {n.rsplit("/", 1)[1] for n in names if n.startswith(name.replace(".", "/") + "/") and n.count("/") == 2}
        assert sources <= packed, f"{folder}/ files missing from the wheel: {sources - packed}"
    assert not any(n.startswith("tests/") for n in names)
    assert {f"mmrec/index/static/{f}" for f in ("index.html", "app.js", "style.css")} <= set(names)  # index serve's page
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mmrec = mmrec.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

"""Render-level tests of the voila block."""

import json
import subprocess
from importlib import resources

FILES = resources.files("codestudio_voila").joinpath("files")


def test_renders_as_a_webapp_block_serving_a_folder_of_notebooks(codestudio_webapp_block, codestudio_render):
    # Voila runs a notebook afresh on each visit: no restart watcher.
    codestudio_webapp_block("voila", files=FILES, port=8866, version="0.5.13", app="voila",
                            starter={"voila/app.ipynb": "app.ipynb"}, label="Voila", proxied_subpath="$request_uri",
                            probe="/", kubernetes_probe="/code-studios/P/s/8866/",
                            requirements=("ipykernel==7.4.0",), restart_on_change=False)
    # Another folder moves the starter notebook with it.
    r = codestudio_render("- {type: voila, app: dashboards}\n")
    assert [f.path for _, f in r.state.starter_files] == ["dashboards/app.ipynb"]


def test_example_notebook_and_start_script_are_valid():
    nb = json.loads(FILES.joinpath("app.ipynb").read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            compile("".join(cell["source"]), "cell", "exec")
    subprocess.run(["sh", "-n", str(FILES.joinpath("start.sh"))], check=True)
    text = FILES.joinpath("start.sh").read_text()
    for word in ('--base_url="$base/"', "--Voila.ip=0.0.0.0", '--port="$port"', "--no-browser"):
        assert word in text

"""Render-level tests of the gradio block."""

import subprocess
from importlib import resources

FILES = resources.files("codestudio_gradio").joinpath("files")


def test_renders_as_a_webapp_block(codestudio_webapp_block):
    # Gradio is told its root path; the gateway strips the prefix (so the Kubernetes probe path is bare).
    codestudio_webapp_block("gradio", files=FILES, port=7860, version="6.31.0", app="gradio/app.py",
                            starter={"gradio/app.py": "app.py"}, label="Gradio", proxied_subpath="/",
                            probe="/config", kubernetes_probe="/config")


def test_example_app_and_start_script_are_valid():
    compile(FILES.joinpath("app.py").read_text(), "app.py", "exec")
    subprocess.run(["sh", "-n", str(FILES.joinpath("start.sh"))], check=True)
    text = FILES.joinpath("start.sh").read_text()
    for word in ('GRADIO_ROOT_PATH="$root"', "GRADIO_SERVER_NAME=0.0.0.0", 'GRADIO_SERVER_PORT="$port"', "restart_on_change.py"):
        assert word in text

"""Render-level tests of the dash block."""

import subprocess
from importlib import resources

FILES = resources.files("codestudio_dash").joinpath("files")


def test_renders_as_a_webapp_block(codestudio_webapp_block):
    # Dash serves the full browser path, which the gateway passes unchanged.
    codestudio_webapp_block("dash", files=FILES, port=8050, version="4.4.1", app="dash/app.py",
                            starter={"dash/app.py": "app.py"}, label="Dash", proxied_subpath="$request_uri",
                            probe="/_dash-layout", kubernetes_probe="/code-studios/P/s/8050/_dash-layout")


def test_example_app_and_start_script_are_valid():
    compile(FILES.joinpath("app.py").read_text(), "app.py", "exec")
    subprocess.run(["sh", "-n", str(FILES.joinpath("start.sh"))], check=True)
    text = FILES.joinpath("start.sh").read_text()
    for word in ('DASH_URL_BASE_PATHNAME="$base/"', "HOST=0.0.0.0", 'PORT="$port"', "restart_on_change.py"):
        assert word in text

"""The `modelplex` command end to end: `serve` in a subprocess on port 0, the client
commands against it, and startup errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import slow_plugin

CLI = [sys.executable, "-m", "modelplex_client.cli"]


@pytest.fixture
def served(example_plugins, tmp_path):
    config = tmp_path / "modelplex.toml"
    config.write_text(
        '[server]\nport = 0\n[plugins]\nblock = ["broken_example"]\n'
        '[[models]]\nspec = "dominant-color"\nname = "colors"\ndevices = ["cpu"]\nweights = "random"\n'
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(example_plugins), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"serving on ([\d.]+:\d+)", line)
        assert match, f"no address in {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield match.group(1)
    finally:
        proc.terminate()
        assert proc.wait(20) == 0, proc.stderr.read()


def run(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_models_plugins_and_classify(served, tmp_path, make_image):
    out = run("models", "--server", served)
    assert out.returncode == 0, out.stderr
    assert re.search(r"colors\s+image_classification\s+ready\s+dominant-color/default\s+weights=random", out.stdout)

    out = run("plugins", "--server", served, "--json")
    plugins = {p["name"]: p for p in map(json.loads, out.stdout.splitlines())}
    assert (
        plugins["example_colors"]["state"] == "PLUGIN_STATE_ACTIVE"
        and plugins["broken_example"]["state"] == "PLUGIN_STATE_SKIPPED"
    )

    green = tmp_path / "green.png"
    green.write_bytes(make_image((0, 255, 0)))
    out = run("classify", str(green), "--model", "colors", "--top-k", "2", "--server", served)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].strip().endswith("green (1)")

    out = run("classify", str(green), "--model", "colors", "--json", "--server", served)
    result = json.loads(out.stdout)
    assert result["image"] == str(green) and result["classes"][0]["label"] == "green" and len(result["classes"]) == 3

    out = run("classify", str(green), "--model", "nope", "--server", served)
    assert out.returncode == 1 and "NOT_FOUND: no model named 'nope'" in out.stderr


def test_serve_refuses_a_missing_device_at_startup(example_plugins):
    env = {**os.environ, "PYTHONPATH": str(example_plugins)}
    out = subprocess.run(
        [*CLI, "serve", "--port", "0", "--model", "dominant-color", "--device", "cuda:3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1
    assert "device 'cuda:3' does not exist" in out.stderr


def test_serve_reports_a_bad_config_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nportt = 1\n")
    out = subprocess.run([*CLI, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "server.portt: unknown key" in out.stderr


def test_client_command_against_no_server():
    out = run("models", "--server", "127.0.0.1:1", "--timeout", "2")
    assert out.returncode == 1 and "UNAVAILABLE" in out.stderr


def test_serve_stops_on_sigint_while_models_load(tmp_path):
    """SIGINT during start-up ends the server without it ever serving: the model's load is
    known to be in progress (it marks it) when the signal is sent."""
    import signal
    import time

    site = slow_plugin.install(tmp_path / "site")
    config = tmp_path / "slow.toml"
    config.write_text(
        f'[server]\nport = 0\n[[models]]\nspec = "slow-load"\nweights = "random"\ndevices = ["cpu"]\n'
        f'settings = {{ dir = "{tmp_path}" }}\n'
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 120  # a bound against hanging, not a measure
        while not (tmp_path / "loading").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        (tmp_path / "release").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "serving on" not in out

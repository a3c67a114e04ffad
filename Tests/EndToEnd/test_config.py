"""Settings files (--config), FRAMERELAY_… environment variables and flags, in that order of precedence;
--print-config; one line per problem and exit code 2; the annotated example files; and a gateway
relay-client publishing several cameras from one file over one connection."""
import json
import os
import re
import subprocess
import time

import pytest
import yaml

import support

REPO = support.REPO
SERVER_EXAMPLE = REPO / "relay-server" / "relay-server.yaml"
CLIENT_EXAMPLE = REPO / "relay-client" / "relay-client.yaml"


def run(argv, env=None, timeout=30):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FRAMERELAY_")}
    environment.update(env or {})
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=environment)


def printed(argv, env=None):
    result = run([*argv, "--print-config"], env=env)
    assert result.returncode == 0, f"--print-config failed ({result.returncode}):\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def problems(result):
    assert result.returncode == 2, f"expected exit code 2, got {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return [line for line in result.stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- relay-server

def test_the_server_example_loads_and_prints_what_it_says():
    example = yaml.safe_load(SERVER_EXAMPLE.read_text())
    shown = printed([support.RELAY_SERVER, "--config", SERVER_EXAMPLE])
    assert shown["listen"] == example["listen"]
    assert shown["ring"]["max_bytes"] == example["ring"]["max_bytes"]
    assert shown["metrics"]["listen"] == example["metrics"]["listen"]
    assert shown["annotations"]["batch_wait_ms"] == example["annotations"]["batch_wait_ms"]
    assert shown["simple"]["shape"] == example["simple"]["shape"]
    assert shown["log"]["level"] == example["log"]["level"]


def test_flags_override_the_environment_which_overrides_the_file(tmp_path):
    settings = tmp_path / "server.yaml"
    settings.write_text("window: 5\nring:\n  max_seconds: 7\nmax_devices: 3\n")
    base = [support.RELAY_SERVER, "--config", settings]
    assert printed(base)["window"] == 5
    assert printed(base, env={"FRAMERELAY_WINDOW": "6"})["window"] == 6
    shown = printed([*base, "--window", "7"], env={"FRAMERELAY_WINDOW": "6"})
    assert shown["window"] == 7
    assert shown["ring"]["max_seconds"] == 7.0 and shown["max_devices"] == 3
    assert printed([support.RELAY_SERVER])["window"] == 32, "the default without any layer"


def test_the_server_serves_what_the_file_says(processes, tmp_path):
    settings = tmp_path / "server.yaml"
    settings.write_text(f"listen: ['127.0.0.1:0']\ndata_dir: {tmp_path / 'data'}\nmetrics:\n  listen: 127.0.0.1:0\n")
    process = processes("relay-server", [support.RELAY_SERVER, "--config", settings])
    support.relay_server_ready(process, timeout=15)
    process.wait_for_output(support.framerelay_support.METRICS_READY_LINE, timeout=10)  # metrics.listen from the file
    assert (tmp_path / "data" / "annotations.sqlite").exists(), "data_dir from the file"


def test_secrets_are_masked_when_printed(tmp_path):
    secret = tmp_path / "upstream.secret"
    secret.write_text("hunter2\n")
    shown = run([support.RELAY_SERVER, "--annotations-upstream", "https://cloud.example/a",
                 "--annotations-secret-file", secret, "--print-config"])
    assert shown.returncode == 0, shown.stderr
    assert "hunter2" not in shown.stdout


def test_an_invalid_file_is_one_line_per_problem_and_exit_2(tmp_path):
    settings = tmp_path / "server.yaml"
    settings.write_text("ring:\n  max_byts: 1000\nwindow: many\nhttp2:\n  max_frame_size: 10\nlisten: [nowhere]\n"
                        "log:\n  level: loud\n")
    result = run([support.RELAY_SERVER, "--config", settings, "--listen", "127.0.0.1:0"])
    lines = problems(result)
    text = "\n".join(lines)
    assert "listening" not in result.stdout, "nothing starts"
    assert re.search(r"server\.yaml:2: unknown key ring\.max_byts; did you mean ring\.max_bytes\?", text), text
    assert re.search(r"server\.yaml:3: window: \"many\" is not a whole number", text), text
    assert re.search(r"http2\.max_frame_size: \"10\" is not a whole number from 16384 to 16777215", text), text
    assert re.search(r"log\.level: \"loud\" is not one of trace, debug", text), text
    assert len(lines) == 4, f"one line per problem (the --listen flag overrides the file's bad listen): {lines}"


def test_numbers_too_large_or_not_finite_are_problems_not_crashes(tmp_path):
    """Fuzzing (Tests/Fuzz/Regressions/settings) found relay-server trapping on a huge decoder.idle_seconds:
    seconds are turned into whole milliseconds. A file, a flag and the client's --duration."""
    settings = tmp_path / "server.yaml"
    settings.write_text("decoder:\n  idle_seconds: 106666666666666666666666666666666666666666666666666666666666\n"
                        "ring:\n  max_seconds: inf\n")
    lines = problems(run([support.RELAY_SERVER, "--config", settings, "--listen", "127.0.0.1:0",
                          "--tls-reload-seconds", "1e300"]))
    text = "\n".join(lines)
    assert re.search(r"server\.yaml:2: decoder\.idle_seconds: \"10666+\" is not a number above 0 and at most "
                     r"1000000000", text), text
    assert re.search(r"server\.yaml:4: ring\.max_seconds: \"inf\" is not a number", text), text
    assert re.search(r"--tls-reload-seconds: \"1e\+300\" is not a number", text), text
    assert len(lines) == 3, lines
    client = problems(run([support.RELAY_CLIENT, "publish", "--server", "127.0.0.1:1", "--device", "d",
                           "--test-pattern", "--duration", "nan"]))
    assert client == ['relay-client: --duration: "nan" is not a number at least 0 and at most 1000000000'], client


def test_a_bad_environment_variable_is_named(tmp_path):
    result = run([support.RELAY_SERVER, "--print-config"], env={"FRAMERELAY_RING_MAX_BYTES": "-5"})
    assert problems(result) == ['relay-server: FRAMERELAY_RING_MAX_BYTES: "-5" is not a whole number of at least 1']


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    settings = tmp_path / "server.yaml"
    settings.write_text("listen: [127.0.0.1:0\n")
    lines = problems(run([support.RELAY_SERVER, "--config", settings]))
    assert len(lines) == 1 and "not valid YAML" in lines[0], lines


# ---------------------------------------------------------------- relay-client

def test_the_client_example_loads(tmp_path):
    ca, token = tmp_path / "ca.pem", tmp_path / "edge.token"
    ca.write_text("not read by --print-config\n")
    token.write_text("a-token\n")
    shown = printed([support.RELAY_CLIENT, "publish", "--config", CLIENT_EXAMPLE],
                    env={"FRAMERELAY_TLS_CA": str(ca), "FRAMERELAY_TOKEN_FILE": str(token)})
    example = yaml.safe_load(CLIENT_EXAMPLE.read_text())
    assert shown["server"] == example["server"]
    assert shown["tls"]["ca"] == str(ca), "the environment overrides the file"
    assert [camera["device"] for camera in shown["cameras"]] == [c["device"] for c in example["cameras"]]
    assert shown["queue"]["max_bytes_total"] == example["queue"]["max_bytes_total"]
    assert "secret@" not in json.dumps(shown), "the RTSP password is masked"
    assert shown["cameras"][1]["encoder"] == "h264_v4l2m2m"


def test_a_bad_camera_entry_names_its_index_and_field(tmp_path):
    settings = tmp_path / "client.yaml"
    settings.write_text("server: 127.0.0.1:1\ncameras:\n  - device: a\n    test_patern: true\n"
                        "  - device: b\n    rtsp: http://nope\n  - rtsp: rtsp://x/1\n  - device: a\n    fps: 999\n")
    lines = problems(run([support.RELAY_CLIENT, "publish", "--config", settings]))
    text = "\n".join(lines)
    assert re.search(r"cameras\[0\]: unknown key test_patern; did you mean test_pattern\?", text), text
    assert re.search(r"cameras\[1\]\.rtsp: \"http://nope\" is not an rtsp:// or rtsps:// URL", text), text
    assert re.search(r"cameras\[2\]: device: missing", text), text
    assert re.search(r"cameras\[3\]\.fps: \"999\" is not a whole number from 1 to 240", text), text


def established_connections(pid, port):
    """TCP connections of process pid to 127.0.0.1:port (from ss)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    return [line for line in out.splitlines() if f"pid={pid}," in line]


def test_a_gateway_publishes_every_camera_over_one_connection(processes, start_server, consumer, tmp_path):
    server = start_server()
    port = int(server.address.rsplit(":", 1)[1])
    settings = tmp_path / "gateway.yaml"
    settings.write_text(f"""server: {server.address}
queue:
  max_bytes_total: 30000000
cameras:
  - device: gw-a
    test_pattern: true
    size: 320x240
    fps: 15
  - device: gw-b
    test_pattern: true
    size: 160x120
    fps: 10
  - device: gw-broken
    rtsp: rtsp://127.0.0.1:1/nothing
    rtsp_stall_seconds: 1
""")
    client = processes("relay-client", [support.RELAY_CLIENT, "publish", "--config", settings, "--duration", "6"])
    stub = consumer(server.address)
    for device in ("gw-a", "gw-b"):
        support.wait_for_frame(stub, device, timeout=15)
    connections = established_connections(client.pid, port)
    assert len(connections) == 1, f"one HTTP/2 connection for every camera: {connections}"
    assert client.wait(20) == 0, client.tail()
    summary = json.loads([line for line in client.stdout().splitlines() if '"event":"summary"' in line][-1])
    by_device = {camera["device"]: camera for camera in summary["cameras"]}
    assert set(by_device) == {"gw-a", "gw-b", "gw-broken"}
    for device in ("gw-a", "gw-b"):
        camera = by_device[device]
        assert camera["frames_acked"] > 20 and camera["frames_acked"] == camera["frames_captured"], camera
        assert camera["frames_dropped"] == 0, camera
    assert by_device["gw-broken"]["frames_acked"] == 0
    status = client.stderr()
    for device in ("gw-a", "gw-b", "gw-broken"):
        assert re.search(rf"^status: {device} sent \d+ acked \d+", status, re.M), f"a status line for {device}"
    assert "queue bound per camera 10000000 bytes" in status, "max_bytes_total shared by 3 cameras"
    names = set(support.list_streams(stub))
    assert {"gw-a", "gw-b"} <= names


def test_json_logs_are_one_object_per_line(processes, tmp_path):
    process = processes("relay-server", [support.RELAY_SERVER, "--listen", "127.0.0.1:0", "--data-dir", tmp_path / "d",
                                         "--log-format", "json"])
    server = support.relay_server_ready(process, timeout=15)
    client = processes("relay-client", [support.RELAY_CLIENT, "publish", "--server", server.address, "--device", "j",
                                        "--size", "160x120", "--frames", "10", "--log-format", "json"])
    assert client.wait(20) == 0, client.tail()
    for name, text in (("relay-server", process.stderr()), ("relay-client", client.stderr())):
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines, f"{name} logged nothing"
        for line in lines:
            if line.startswith("status: "):
                continue  # the once-a-second status line is not a log line
            entry = json.loads(line)
            assert {"time", "level", "label", "message"} <= set(entry), entry
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["time"]), entry
    listening = [json.loads(line) for line in process.stderr().splitlines() if '"listening"' in line]
    assert listening and listening[0]["address"] == server.address, "metadata become fields"


def test_every_subcommand_flag_is_a_key(tmp_path):
    settings = tmp_path / "ava.yaml"
    settings.write_text("server: 127.0.0.1:5001\ndevice: ava-1\nencoding: jpg\nshared_memory: true\nack_timeout_seconds: 2\n")
    shown = printed([support.RELAY_CLIENT, "ava", "--config", settings], env={"FRAMERELAY_PIXEL_FORMAT": "bgr24"})
    assert (shown["encoding"], shown["shared_memory"], shown["ack_timeout_seconds"]) == ("jpg", True, 2.0)
    assert shown["pixel_format"] == "bgr24", "from the environment"
    assert printed([support.RELAY_CLIENT, "ava", "--config", settings, "--encoding", "png"])["encoding"] == "png"
    lines = problems(run([support.RELAY_CLIENT, "ava", "--config", settings], env={"FRAMERELAY_ENCODING": "gif"}))
    assert lines == ['relay-client: FRAMERELAY_ENCODING: "gif" is not raw, jpg, png or bmp'], lines
    simple = printed([support.RELAY_CLIENT, "simple"], env={"FRAMERELAY_SHAPE": "48x64x3"})
    assert simple["shape"] == "48x64x3" and simple["server"] == "127.0.0.1:50051"

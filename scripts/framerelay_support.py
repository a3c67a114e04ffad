"""What the end-to-end tests, the benchmarks and scripts/partition-test share: the repo root, the generated
protobuf stubs on sys.path, child processes started and stopped with deadlines, relay-server's ready lines,
and small measurements (a free port, CPU seconds and memory of a process, percentiles, one metric).

Standard library only at import time (scripts/partition-test and scripts/rtmp-server run under the system
python3); the stubs put on the path by add_stubs_to_path() need grpcio. Import it from scripts/ itself
(a script's own folder is on sys.path) or after `sys.path.insert(0, ".../scripts")`.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUBS = REPO / "build" / "python"
STUB_FILES = ("chrysalis/video_streaming_pb2.py", "chrysalis/video_streaming_pb2_grpc.py",
              "framerelay/v1/relay_pb2.py", "framerelay/v1/relay_pb2_grpc.py")

SERVER_READY_LINE = r"^relay-server listening on (\S+)\s*$"
METRICS_READY_LINE = r"^relay-server metrics on (\S+)\s*$"


# ---------------------------------------------------------------- protobuf stubs

class StubsMissing(RuntimeError):
    pass


def add_stubs_to_path():
    """Puts build/python (grpcio stubs generated from protos/ by scripts/setup) first on sys.path."""
    missing = [name for name in STUB_FILES if not (STUBS / name).is_file()]
    if missing:
        raise StubsMissing(f"no Python stubs in {STUBS} (missing {missing[0]}): run scripts/setup first")
    if str(STUBS) not in sys.path:
        sys.path.insert(0, str(STUBS))
    return STUBS


# ---------------------------------------------------------------- processes

class ProcessError(RuntimeError):
    """A managed process did not do what was waited for (exited, or not within the deadline): a one-line
    summary, and the tail of its stderr."""

    def __init__(self, summary, stderr_tail=None):
        super().__init__(summary if stderr_tail is None else f"{summary}; stderr tail:\n{stderr_tail}")
        self.summary = summary
        self.stderr_tail = stderr_tail


def parent_death_signal(sig):
    """A preexec_fn: the child gets `sig` when the thread that started it dies (even by SIGKILL)."""
    def preexec():
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001: a missing safety net must not stop the child from starting
            pass
    return preexec


def interrupt_on_signals(*signals):
    """Makes SIGTERM and SIGHUP (or the signals given) end this process like Ctrl-C does: KeyboardInterrupt,
    so the `finally` blocks that stop its children run."""
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in signals or (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)


def tail(text, lines=30):
    return "\n".join(text.splitlines()[-lines:])


def file_tail(path, lines=30):
    """The last lines of a file, "" when it cannot be read."""
    try:
        return tail(Path(path).read_text(errors="replace"), lines)
    except OSError:
        return ""


class ManagedProcess:
    """A child process whose stdout and stderr go to files NAME.stdout and NAME.stderr in log_dir.

    By default the child writes to the files itself (no pipe can fill up and stall it). With
    timestamps=True its lines are read as they come instead, stamped with the wall-clock time of arrival,
    kept in memory (timed_lines) and written to the files as "SECONDS.MS line". merge_output=True sends
    stderr to the stdout file. new_session=True gives the child a session (and process group) of its own:
    a Ctrl-C on the terminal does not reach it, and stop() signals the whole group. death_signal: the
    signal the child gets if this process dies without stopping it.
    Failures of wait_for_output go through fail(error), which raises the ProcessError; the tests make it
    pytest.fail.
    (`__tracebackhide__` keeps these helpers' frames out of pytest's failure reports.)
    """

    def __init__(self, name, argv, log_dir, env=None, cwd=REPO, timestamps=False, merge_output=False,
                 new_session=False, death_signal=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.stdout_path = Path(log_dir) / f"{name}.stdout"
        self.stderr_path = self.stdout_path if merge_output else Path(log_dir) / f"{name}.stderr"
        self.new_session = new_session
        self._timed = {"stdout": [], "stderr": []} if timestamps else None
        self._lock = threading.Lock()
        self._readers = []
        options = dict(stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, **(env or {})},
                       start_new_session=new_session,
                       preexec_fn=parent_death_signal(death_signal) if death_signal else None)
        if timestamps:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT if merge_output else subprocess.PIPE, **options)
            streams = [("stdout", self.process.stdout)] + ([] if merge_output else [("stderr", self.process.stderr)])
            self._readers = [threading.Thread(target=self._read, args=(stream, pipe), daemon=True)
                             for stream, pipe in streams]
            for reader in self._readers:
                reader.start()
        else:
            with open(self.stdout_path, "wb") as out:
                if merge_output:
                    self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, **options)
                else:
                    with open(self.stderr_path, "wb") as err:
                        self.process = subprocess.Popen(self.argv, stdout=out, stderr=err, **options)

    def _read(self, stream, pipe):
        path = self.stdout_path if stream == "stdout" else self.stderr_path
        with open(path, "w") as log_file:
            for raw in pipe:
                now = time.time()
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock:
                    self._timed[stream].append((now, line))
                log_file.write(f"{now:.3f} {line}\n")
                log_file.flush()

    @property
    def pid(self):
        return self.process.pid

    @property
    def returncode(self):
        return self.process.poll()

    def alive(self):
        return self.process.poll() is None

    def timed_lines(self, stream="stdout"):
        """[(arrival wall-clock time, line)] so far; only with timestamps=True."""
        if self._timed is None:
            raise ValueError(f"{self.name} was not started with timestamps=True")
        with self._lock:
            return list(self._timed["stdout" if self.stderr_path == self.stdout_path else stream])

    def output(self, stream="stdout"):
        if self._timed is not None:
            return "".join(line + "\n" for _, line in self.timed_lines(stream))
        path = self.stdout_path if stream == "stdout" else self.stderr_path
        return path.read_text(errors="replace")

    def stdout(self):
        return self.output("stdout")

    def stderr(self):
        return self.output("stderr")

    def tail(self, stream="stderr", lines=30):
        return tail(self.output(stream), lines)

    def fail(self, error):
        __tracebackhide__ = True
        raise error

    def _join_readers(self, timeout=2.0):
        for reader in self._readers:
            reader.join(timeout)

    def wait_for_output(self, pattern, timeout, stream="stdout"):
        """Waits for a line matching pattern (re.MULTILINE); fails, with the stderr tail, on exit or timeout."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output(stream), re.MULTILINE)
            if match:
                return match
            if not self.alive():
                self._join_readers()
                # One last look: the line may have been written just before the exit.
                match = re.search(pattern, self.output(stream), re.MULTILINE)
                if match:
                    return match
                return self.fail(ProcessError(f"{self.name} exited with {self.process.returncode} before "
                                              f"printing /{pattern}/ on {stream}", self.tail()))
            if time.monotonic() > deadline:
                return self.fail(ProcessError(f"{self.name} did not print /{pattern}/ on {stream} within "
                                              f"{timeout}s", self.tail()))
            time.sleep(0.05)

    def wait(self, timeout):
        """Waits for the exit; returns the exit code, or None if it still runs after timeout seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.process.poll() is not None:
                self._join_readers()

    def _signal(self, sig):
        try:
            if self.new_session:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout=5.0, sig=signal.SIGTERM):
        """Sends sig and waits up to timeout; then SIGKILL. Returns the exit code, or None if it was killed."""
        try:
            if not self.alive():
                return self.process.returncode
            self._signal(sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(5)
                return None
        finally:
            self._join_readers()


# ---------------------------------------------------------------- relay-server

def parse_host_port(text):
    """("1.2.3.4", 5) from "1.2.3.4:5", ("::1", 5) from "[::1]:5"; ValueError otherwise."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^\s:\[\]]+):(\d+)", text)
    if not match:
        raise ValueError(f"not HOST:PORT or [IPv6]:PORT: {text!r}")
    host, port = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return host, int(port)


def join_host_port(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RelayServer:
    """A started relay-server: its ManagedProcess, where it listens, and where its metrics are (or None)."""

    def __init__(self, process, host, port, metrics_address=None):
        self.process = process
        self.host = host
        self.port = port
        self.address = join_host_port(host, port)
        self.metrics_address = metrics_address


def relay_server_ready(process, timeout, metrics=None):
    """Waits for relay-server's ready line `relay-server listening on HOST:PORT` (and, when metrics is
    true, or None and the argv has --metrics-listen, for `relay-server metrics on HOST:PORT`), each within
    timeout seconds; returns a RelayServer. The lines may come in either order."""
    __tracebackhide__ = True
    if metrics is None:
        metrics = "--metrics-listen" in process.argv

    def address(pattern):
        __tracebackhide__ = True
        found = process.wait_for_output(pattern, timeout=timeout).group(1)
        try:
            return parse_host_port(found)
        except ValueError as error:
            return process.fail(ProcessError(f"{process.name}: {error}, in its line /{pattern}/"))
    host, port = address(SERVER_READY_LINE)
    metrics_address = join_host_port(*address(METRICS_READY_LINE)) if metrics else None
    return RelayServer(process, host, port, metrics_address)


def transport_floor_ready(process, timeout):
    """Waits for relay-transport-floor's `relay-transport-floor listening on HOST:PORT`; returns HOST:PORT."""
    __tracebackhide__ = True
    return process.wait_for_output(r"^relay-transport-floor listening on (\S+)\s*$", timeout=timeout).group(1)


def start_relay_server(binary, log_dir, *args, name="relay-server", listen="127.0.0.1:0", timeout=30,
                       **process_options):
    """Starts `binary --listen LISTEN ARGS...` as a ManagedProcess and waits for its ready line(s); a server
    that does not get ready is stopped before the ProcessError is raised."""
    process = ManagedProcess(name, [binary, "--listen", listen, *args], log_dir, **process_options)
    try:
        return relay_server_ready(process, timeout)
    except BaseException:
        process.stop()
        raise


def metric_value(address, name, timeout=5):
    """The value of the unlabelled series `name` on http://ADDRESS/metrics, None when it is not there."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout).read().decode()
    match = re.search(rf"^{re.escape(name)}(?:{{}})? ([0-9.eE+-]+)$", text, re.M)
    return float(match.group(1)) if match else None


# ---------------------------------------------------------------- small measurements

def pick_port(host="127.0.0.1"):
    """A port nothing listens on right now (bound and released)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def process_cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (None if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def memory_kib(pid, field="VmRSS"):
    """VmRSS (resident set), VmHWM (its peak) or another field of /proc/PID/status, in KiB; None once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values, p, nearest_rank=False):
    """The p-th percentile (0 to 100) of values; None when there are none.

    Default: the value at index round(p / 100 * (n - 1)) of the sorted values. nearest_rank: the
    ceil(n * p / 100)-th smallest value, so p99 of a handful of values is their maximum.
    """
    if not values:
        return None
    ordered = sorted(values)
    if nearest_rank:
        return ordered[int(max(1, -(-len(ordered) * p // 100))) - 1]
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def own_cpu_seconds():
    """CPU seconds (user + system) this Python process has used."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_stall_seconds():
    """Seconds in which some runnable task waited for a CPU (/proc/pressure/cpu, "some"), None without PSI."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])

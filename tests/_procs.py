"""Waiting on several child processes at once (the localhost multi-worker tests).

Workers of one tf.distribute cluster block in collectives until all have started, so they are
launched together and waited on together; a worker still running after the timeout is killed, and
every worker must exit 0 (its output's tail is shown otherwise).
"""
import socket
import subprocess


def wait_all(procs: list[subprocess.Popen], timeout: float, tail: int = 4000) -> list[str]:
    """The combined stdout/stderr of each process, once all have exited with status 0."""
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-tail:]
    return logs


def free_ports(n: int) -> list[int]:
    """n localhost TCP ports free right now (for the workers of a TF_CONFIG cluster)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports

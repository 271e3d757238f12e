"""``python -m synth_client._service FD MODULE``: run one service of a local
platform (``synth up``) as ``python -m MODULE`` would, tied to the process that
started it.

``FD`` is the read end of the platform's lifeline pipe; only the platform holds
the write end. When the platform process ends, however it ends (SIGKILL
included), the kernel closes the write end, a read here returns end-of-file,
and the service is sent SIGTERM: a graceful stop (drain, the trainer's
checkpoint). If it is still alive a minute later it is killed. A platform that
died before this process started is seen at once (the read returns at once).

No ``prctl(PR_SET_PDEATHSIG)``: it is Linux-only, and it fires when the parent
*thread* that started the child exits, not the process, so a child restarted by
a supervisor thread would be stopped when that thread ends.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

# After SIGTERM: how long a service may take to stop (its drain, the trainer's
# checkpoint) before it is killed.
_KILL_AFTER_SECONDS = 60.0


def _watch_lifeline(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 1):
                break  # end of file: the platform process is gone
        except InterruptedError:
            continue
        except OSError:
            break
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_KILL_AFTER_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or not argv[0].isdigit():
        sys.stderr.write(__doc__ or "")
        sys.exit(2)
    fd, module = int(argv[0]), argv[1]
    threading.Thread(target=_watch_lifeline, args=(fd,), name="platform-lifeline", daemon=True).start()
    sys.argv = [sys.argv[0]]  # the service sees no arguments, as under `python -m MODULE`
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

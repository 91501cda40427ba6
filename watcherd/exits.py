"""Exit statuses that mean "nothing changes by trying again until the user acts": the
service unit lists them in RestartPreventExitStatus=, so systemd does not restart the
daemon every few seconds for ever (sysexits.h names)."""

DAMAGED_INDEX = 65  # EX_DATAERR: the index file cannot be read (cli.damaged_index_help)
CONFIG = 78  # EX_CONFIG: a wrong configuration, or nothing to watch
# EX_UNAVAILABLE: the index's server cannot be reached. Not in RestartPreventExitStatus=:
# a server that is down or still starting comes back, and systemd tries again.
UNREACHABLE = 69
INTERRUPTED = 130  # a scan stopped by Ctrl-C, as a shell reports it

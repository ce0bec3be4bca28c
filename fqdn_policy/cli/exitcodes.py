"""The command's exit codes (the systemd unit's RestartPreventExitStatus names 1 and 2)."""

EXIT_OK = 0
EXIT_INVALID = 1  # a policy file that does not validate
EXIT_USAGE = 2  # a flag refused: argparse's own code, and every configuration refusal's
EXIT_RUNTIME = 3  # the agent could not start or a kernel call failed
# `explain`: 0 (allowed or not enforced), 1 (its --policy file is invalid), 3 (no verdict: the agent
# could not be asked), and these:
EXIT_DROPPED = 4
EXIT_UNKNOWN_POD = 5
